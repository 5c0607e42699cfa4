"""Pieces every end-to-end stack of the tests starts from: secrets, identity store, processes.

The frontend, fault, attack and fuzz suites each run portfolio (identity store), a trading
stub and a gateway as real uvicorn processes; this module holds what they share.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from devstack.servers import ServerProcess
from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from shared.roles import SERVICES
from shared.secrets.generate import generate_secrets

PORTFOLIO_APP = "services.portfolio.app:app"
STUB_APP = "services.stub.app:app"
# Cheap Argon2id: the suite shares two cores; production keeps the defaults.
FAST_ARGON2_ENV = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}


def stack_env(database_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of every process: fresh keys and service token (env secrets
    provider), the identity store at `database_url`, cheap Argon2id, then `extra`."""
    return {
        "SECRETS_PROVIDER": "env",
        **generate_secrets(),
        "PORTFOLIO_DATABASE_URL": database_url,
        **FAST_ARGON2_ENV,
        **extra,
    }


def fast_identity(database_url: str) -> PortfolioIdentityService:
    """Open the identity facade (it migrates the database) with cheap Argon2id."""
    return PortfolioIdentityService(
        settings=PortfolioSettings(
            database_url=database_url,
            argon2_time_cost=1,
            argon2_memory_cost=1024,
            argon2_parallelism=1,
        )
    )


def start_portfolio_and_stub(
    exit_stack: ExitStack, env: Mapping[str, str], logs: Path, *, stub_log: str = "trading.log"
) -> tuple[ServerProcess, ServerProcess]:
    """Start portfolio and a stub named `trading` (stopped by `exit_stack`); return both."""
    portfolio = exit_stack.enter_context(
        ServerProcess(PORTFOLIO_APP, env=env, log_path=logs / "portfolio.log")
    )
    stub = exit_stack.enter_context(
        ServerProcess(
            STUB_APP, env={**env, "STUB_SERVICE_NAME": "trading"}, log_path=logs / stub_log
        )
    )
    return portfolio, stub


def service_urls(portfolio_url: str, stub_url: str) -> dict[str, str]:
    """Gateway settings sending every downstream service to the stub, portfolio to portfolio."""
    return {
        **{f"{service.value.upper()}_SERVICE_URL": stub_url for service in SERVICES},
        "PORTFOLIO_SERVICE_URL": portfolio_url,
    }
