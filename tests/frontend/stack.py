"""The real processes behind the frontend: portfolio (identity), gateway, a trading stub.

Started once per test session on loopback ports against a fresh PostgreSQL database;
each test makes its own users so tests do not see each other's logins or role changes.
"""

from __future__ import annotations

import secrets
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from shared.keys import generate_private_key, load_private_key, public_key_text
from tests.support.databases import postgres_database
from tests.support.servers import ServerProcess

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
                "services.api_gateway.app:app",
                env={**self.env, **env},
                log_path=self.log_dir / f"{name}.log",
            )
        )

    def close(self) -> None:
        self._exit.close()


def start_stack(log_dir: Path) -> Stack:
    """Start portfolio, gateway and the trading stub; stop them with `Stack.close()`."""
    exit_stack = ExitStack()
    try:
        database_url = exit_stack.enter_context(postgres_database())
        assertion_key = generate_private_key()
        env = {
            "SECRETS_PROVIDER": "env",
            "IDENTITY_SERVICE_TOKEN": secrets.token_urlsafe(32),
            "GATEWAY_JWT_PRIVATE_KEY": generate_private_key(),
            "GATEWAY_ASSERTION_PRIVATE_KEY": assertion_key,
            "GATEWAY_ASSERTION_PUBLIC_KEY": public_key_text(load_private_key(assertion_key)),
            "PORTFOLIO_DATABASE_URL": database_url,
            # Cheap Argon2id: the suite shares two cores; production keeps the defaults.
            "PORTFOLIO_ARGON2_TIME_COST": "1",
            "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
            "PORTFOLIO_ARGON2_PARALLELISM": "1",
            "GATEWAY_ACCESS_LOG": "stdout",
            # Every test logs in from 127.0.0.1; only the per-user throttle is under test.
            "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "10000",
        }
        # The facade migrates the new database before the service process opens it.
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
            ServerProcess("services.portfolio.app:app", env=env, log_path=log_dir / "portfolio.log")
        )
        trading = exit_stack.enter_context(
            ServerProcess(
                "services.stub.app:app",
                env={**env, "STUB_SERVICE_NAME": "trading"},
                log_path=log_dir / "trading.log",
            )
        )
        env["PORTFOLIO_SERVICE_URL"] = portfolio.url
        env["TRADING_SERVICE_URL"] = trading.url
        gateway = exit_stack.enter_context(
            ServerProcess(
                "services.api_gateway.app:app",
                env={**env, "GATEWAY_TOKEN_TTL_SECONDS": "900"},
                log_path=log_dir / "gateway.log",
            )
        )
        return Stack(identity, gateway.url, env, log_dir, exit_stack)
    except BaseException:
        exit_stack.close()
        raise
