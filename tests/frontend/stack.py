"""The real processes behind the frontend: portfolio (identity), gateway, a trading stub.

Started once per test session on loopback ports against a fresh PostgreSQL database;
each test makes its own users so tests do not see each other's logins or role changes.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from devstack.databases import postgres_database
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from services.portfolio.identity import PortfolioIdentityService
from tests.support.stack import fast_identity, stack_env, start_portfolio_and_stub

PASSWORD = "a long enough test password"


@dataclass
class Stack:
    """URLs of the running processes and the identity store they share."""

    identity: PortfolioIdentityService
    gateway_url: str
    env: dict[str, str]
    log_dir: Path
    _exit: ExitStack = field(repr=False)

    def user(self, *roles: str, expired: bool = False, prefix: str = "user") -> str:
        """Create a user with `PASSWORD` and the given roles; return the username."""
        username = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.identity.create_user(
            username, PASSWORD, roles=list(roles), must_change_password=expired
        )
        return username

    def gateway(self, **env: str) -> ServerProcess:
        """Start one more gateway on the same identity store (e.g. a short token TTL)."""
        name = f"gateway-{uuid.uuid4().hex[:6]}"
        return self._exit.enter_context(
            ServerProcess(
                GATEWAY_APP,
                env={**self.env, **env},
                log_path=self.log_dir / f"{name}.log",
            )
        )

    def close(self) -> None:
        self._exit.close()


def start_stack(log_dir: Path, **extra: str) -> Stack:
    """Start portfolio, gateway and the trading stub (`extra`: more environment for all
    three); stop them with `Stack.close()`."""
    exit_stack = ExitStack()
    try:
        database_url = exit_stack.enter_context(postgres_database())
        env = stack_env(
            database_url,
            GATEWAY_ACCESS_LOG="stdout",
            # Every test logs in from 127.0.0.1; only the per-user throttle is under test.
            GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="10000",
            **extra,
        )
        # The facade migrates the new database before the service process opens it.
        identity = fast_identity(database_url)
        exit_stack.callback(identity.close)
        portfolio, trading = start_portfolio_and_stub(exit_stack, env, log_dir)
        env["PORTFOLIO_SERVICE_URL"] = portfolio.url
        env["TRADING_SERVICE_URL"] = trading.url
        gateway = exit_stack.enter_context(
            ServerProcess(
                GATEWAY_APP,
                env={**env, "GATEWAY_TOKEN_TTL_SECONDS": "900"},
                log_path=log_dir / "gateway.log",
            )
        )
        return Stack(identity, gateway.url, env, log_dir, exit_stack)
    except BaseException:
        exit_stack.close()
        raise
