"""Fixtures of the portfolio tests: cheap Argon2 settings, an opened database, a fake clock."""

from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.portfolio.accounts.service import IdentityService
from services.portfolio.config import PortfolioSettings
from services.portfolio.db import Database
from shared.secrets import SecretsManager, SecretsSettings

PASSWORD = "correct horse battery"
# Cheap Argon2id so the suite stays fast on two shared cores; production keeps the defaults.
CHEAP_ARGON2 = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}
CHEAP_ARGON2_ENV = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def make_settings(database_url: str, **overrides: Any) -> PortfolioSettings:
    """Build settings for a test database with cheap hashing."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "password_rotation_days": 90,
        **CHEAP_ARGON2,
        **overrides,
    }
    return PortfolioSettings(**values)


def env_secrets(environ: Mapping[str, str] | None = None) -> SecretsManager:
    """A secrets manager on the `env` provider reading only `environ`."""
    return SecretsManager(
        settings=SecretsSettings(secrets_provider="env"), environ=dict(environ or {})
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def settings(database_url: str) -> PortfolioSettings:
    return make_settings(database_url)


@pytest.fixture
async def database(settings: PortfolioSettings) -> AsyncIterator[Database]:
    database = await Database.open(settings)
    yield database
    await database.close()


@pytest.fixture
def identity(database: Database, settings: PortfolioSettings, clock: Clock) -> IdentityService:
    return IdentityService(database, settings, secrets_manager=env_secrets(), clock=clock)


# The HTTP API tests' clients (positions, trades); a module may define its own `client`.
@pytest.fixture
async def client(settings: PortfolioSettings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the portfolio app on the test's database, without a service token."""
    from tests.portfolio.http import open_client  # http.py imports this module

    async with open_client(settings, token=None) as (_, client):
        yield client


@pytest.fixture
async def any_client(sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client for tests where the database makes no difference (SQLite only)."""
    from tests.portfolio.http import open_client  # http.py imports this module

    async with open_client(make_settings(sqlite_url), token=None) as (_, client):
        yield client
