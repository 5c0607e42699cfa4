"""Processes the fuzzers talk to: identity/portfolio on SQLite, a stub, a gateway."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest
import schemathesis

from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from shared.assertion import AssertionSigner
from tests.support.stack import fast_identity, service_urls, stack_env, start_portfolio_and_stub

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
    env = stack_env(
        database_url,
        GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="1000000",
        GATEWAY_ACCESS_LOG=str(root / "access.log"),
    )
    with fast_identity(database_url) as identity:
        identity.create_user(ADMIN, PASSWORD, roles=["admin"])
        identity.create_user(TRADER, PASSWORD, roles=["portfolio"])
        admin_key = identity.rotate_api_key(ADMIN, secrets.token_hex(32)).api_key
    with ExitStack() as stack:
        portfolio, stub = start_portfolio_and_stub(stack, env, root, stub_log="stub.log")
        gateway = stack.enter_context(
            ServerProcess(
                GATEWAY_APP,
                env={**env, **service_urls(portfolio.url, stub.url)},
                log_path=root / "gateway.log",
            )
        )
        yield FuzzStack(
            gateway_url=gateway.url,
            portfolio_url=portfolio.url,
            admin_key=admin_key,
            service_token=env["IDENTITY_SERVICE_TOKEN"],
            signer=AssertionSigner(env["GATEWAY_ASSERTION_PRIVATE_KEY"]),
        )


@pytest.fixture(scope="session")
def gateway_schema(fuzz_stack: FuzzStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_stack.gateway_url + "/openapi.json")


@pytest.fixture(scope="session")
def portfolio_schema(fuzz_stack: FuzzStack) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(fuzz_stack.portfolio_url + "/openapi.json")


@pytest.fixture(scope="session")
def identity_schema(fuzz_stack: FuzzStack) -> schemathesis.BaseSchema:
    """The internal identity API's own document (left out of the public one)."""
    return schemathesis.openapi.from_url(
        fuzz_stack.portfolio_url + "/internal/identity/openapi.json",
        headers={"X-Service-Token": fuzz_stack.service_token},
    )
