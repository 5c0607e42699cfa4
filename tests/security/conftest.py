"""The attack suite's target: the real processes on loopback, on a fresh PostgreSQL database.

portfolio (identity store + portfolio API), a gateway, and a trading stub, started once for
the suite. The database URL carries a password (PostgreSQL's trust authentication ignores
it) so the suite can look for it in every log. Tests needing other gateway settings start
one more gateway with `stack.gateway(...)`.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from shared.keys import generate_private_key, load_private_key, public_key_text
from shared.roles import SERVICES
from tests.support.databases import postgres_database
from tests.support.servers import GATEWAY_APP, ServerProcess

PASSWORD = "a long enough attack-suite password"
DATABASE_PASSWORD = "db-" + secrets.token_hex(12)
FAST_ARGON2 = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}


@dataclass
class Stack:
    """Where the processes listen, the secrets they were given, and the identity store."""

    env: dict[str, str] = field(repr=False)  # holds the secrets
    portfolio_url: str
    gateway_url: str
    stub_url: str
    database_url: str = field(repr=False)
    identity: PortfolioIdentityService
    logs: Path
    _exit: ExitStack = field(repr=False)

    def user(self, *roles: str, api_key: bool = False) -> tuple[str, str | None]:
        """Create a user with `PASSWORD`; return its name and (when asked) its API key."""
        name = f"sec-{uuid.uuid4().hex[:10]}"
        self.identity.create_user(name, PASSWORD, roles=list(roles))
        key = self.identity.rotate_api_key(name, secrets.token_hex(32)).api_key if api_key else None
        return name, key

    def gateway(self, **env: str) -> ServerProcess:
        """Start one more gateway on the same identity store, with other settings."""
        name = f"gateway-{uuid.uuid4().hex[:6]}"
        return self._exit.enter_context(
            ServerProcess(GATEWAY_APP, env={**self.env, **env}, log_path=self.logs / f"{name}.log")
        )

    def secret_values(self) -> dict[str, str]:
        """Every secret this stack holds, by name, to look for where it must not be."""
        names = (
            "IDENTITY_SERVICE_TOKEN",
            "GATEWAY_JWT_PRIVATE_KEY",
            "GATEWAY_ASSERTION_PRIVATE_KEY",
        )
        return {
            **{name: self.env[name] for name in names},
            "database password": DATABASE_PASSWORD,
        }


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("security")
    with ExitStack() as exit_stack:
        plain_url = exit_stack.enter_context(postgres_database())
        database_url = (
            make_url(plain_url)
            .set(password=DATABASE_PASSWORD)
            .render_as_string(hide_password=False)
        )
        assertion_key = generate_private_key()
        env = {
            "SECRETS_PROVIDER": "env",
            "IDENTITY_SERVICE_TOKEN": secrets.token_urlsafe(40),
            "GATEWAY_JWT_PRIVATE_KEY": generate_private_key(),
            "GATEWAY_ASSERTION_PRIVATE_KEY": assertion_key,
            "GATEWAY_ASSERTION_PUBLIC_KEY": public_key_text(load_private_key(assertion_key)),
            "PORTFOLIO_DATABASE_URL": database_url,
            "PORTFOLIO_PASSWORD_ROTATION_DAYS": "90",
            **FAST_ARGON2,
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
        }
        identity = PortfolioIdentityService(
            settings=PortfolioSettings(
                database_url=database_url,
                argon2_time_cost=1,
                argon2_memory_cost=1024,
                argon2_parallelism=1,
            )
        )
        exit_stack.callback(identity.close)
        portfolio = exit_stack.enter_context(
            ServerProcess("services.portfolio.app:app", env=env, log_path=logs / "portfolio.log")
        )
        stub = exit_stack.enter_context(
            ServerProcess(
                "services.stub.app:app",
                env={**env, "STUB_SERVICE_NAME": "trading"},
                log_path=logs / "trading.log",
            )
        )
        env.update(
            {f"{service.value.upper()}_SERVICE_URL": stub.url for service in SERVICES},
            PORTFOLIO_SERVICE_URL=portfolio.url,
        )
        gateway = exit_stack.enter_context(
            ServerProcess(
                GATEWAY_APP,
                # Every test calls from 127.0.0.1: only the throttle tests' own gateways
                # keep a per-address limit that low.
                env={**env, "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000"},
                log_path=logs / "gateway.log",
            )
        )
        yield Stack(
            env=env,
            portfolio_url=portfolio.url,
            gateway_url=gateway.url,
            stub_url=stub.url,
            database_url=database_url,
            identity=identity,
            logs=logs,
            _exit=exit_stack,
        )
