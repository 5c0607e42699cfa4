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

from devstack.databases import postgres_database
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from services.portfolio.identity import PortfolioIdentityService
from tests.support.stack import fast_identity, service_urls, stack_env, start_portfolio_and_stub

PASSWORD = "a long enough attack-suite password"
DATABASE_PASSWORD = "db-" + secrets.token_hex(12)


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
        env = stack_env(
            database_url,
            PORTFOLIO_PASSWORD_ROTATION_DAYS="90",
            GATEWAY_ACCESS_LOG=str(logs / "access.log"),
        )
        identity = fast_identity(database_url)
        exit_stack.callback(identity.close)
        portfolio, stub = start_portfolio_and_stub(exit_stack, env, logs)
        env.update(service_urls(portfolio.url, stub.url))
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
