"""Processes the fuzzers talk to: identity/portfolio on SQLite, a stub, a gateway."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
import schemathesis

from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from shared.assertion import AssertionSigner
from shared.keys import generate_private_key, load_private_key, public_key_text
from shared.roles import SERVICES
from tests.support.servers import GATEWAY_APP, ServerProcess

ADMIN = "fuzz-admin"
TRADER = "fuzz-trader"
PASSWORD = "a long enough fuzzing password"


@dataclass
class FuzzStack:
    gateway_url: str
    portfolio_url: str
    admin_key: str = field(repr=False)
    service_token: str = field(repr=False)
    signer: AssertionSigner = field(repr=False)

    def portfolio_headers(self) -> dict[str, str]:
        """Credentials for both halves of the portfolio API (internal, and the caller's)."""
        assertion, _ = self.signer.sign(
            username=TRADER, roles=["portfolio"], auth_method="password", service="portfolio"
        )
        return {"X-Service-Token": self.service_token, "X-Identity-Assertion": assertion}


@pytest.fixture(scope="session")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStack]:
    root = tmp_path_factory.mktemp("fuzz")
    database_url = f"sqlite+aiosqlite:///{root / 'portfolio.db'}"
    assertion_key = generate_private_key()
    env = {
        "SECRETS_PROVIDER": "env",
        "IDENTITY_SERVICE_TOKEN": secrets.token_urlsafe(40),
        "GATEWAY_JWT_PRIVATE_KEY": generate_private_key(),
        "GATEWAY_ASSERTION_PRIVATE_KEY": assertion_key,
        "GATEWAY_ASSERTION_PUBLIC_KEY": public_key_text(load_private_key(assertion_key)),
        "PORTFOLIO_DATABASE_URL": database_url,
        "PORTFOLIO_ARGON2_TIME_COST": "1",
        "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
        "PORTFOLIO_ARGON2_PARALLELISM": "1",
        "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "1000000",
        "GATEWAY_ACCESS_LOG": str(root / "access.log"),
    }
    with PortfolioIdentityService(
        settings=PortfolioSettings(
            database_url=database_url,
            argon2_time_cost=1,
            argon2_memory_cost=1024,
            argon2_parallelism=1,
        )
    ) as identity:
        identity.create_user(ADMIN, PASSWORD, roles=["admin"])
        identity.create_user(TRADER, PASSWORD, roles=["portfolio"])
        admin_key = identity.rotate_api_key(ADMIN, secrets.token_hex(32)).api_key
    with ExitStack() as stack:
        portfolio = stack.enter_context(
            ServerProcess("services.portfolio.app:app", env=env, log_path=root / "portfolio.log")
        )
        stub = stack.enter_context(
            ServerProcess(
                "services.stub.app:app",
                env={**env, "STUB_SERVICE_NAME": "trading"},
                log_path=root / "stub.log",
            )
        )
        gateway = stack.enter_context(
            ServerProcess(
                GATEWAY_APP,
                env={
                    **env,
                    **{f"{s.value.upper()}_SERVICE_URL": stub.url for s in SERVICES},
                    "PORTFOLIO_SERVICE_URL": portfolio.url,
                },
                log_path=root / "gateway.log",
            )
        )
        yield FuzzStack(
            gateway_url=gateway.url,
            portfolio_url=portfolio.url,
            admin_key=admin_key,
            service_token=env["IDENTITY_SERVICE_TOKEN"],
            signer=AssertionSigner(assertion_key),
        )


@pytest.fixture(scope="session")
def gateway_schema(fuzz_stack: FuzzStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_stack.gateway_url + "/openapi.json")


@pytest.fixture(scope="session")
def portfolio_schema(fuzz_stack: FuzzStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_stack.portfolio_url + "/openapi.json")
