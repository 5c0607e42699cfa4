"""Fixtures every test package may use."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.databases import postgres_database, sqlite_database

# The suite's processes (and in-process settings) run without the second-factor policy:
# most tests sign admins in with a password and are about something else. The tests of the
# second factor set PORTFOLIO_MFA_REQUIRED_ROLES=admin (the default) explicitly.
os.environ["PORTFOLIO_MFA_REQUIRED_ROLES"] = ""


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Yield the async URL of an empty database: a SQLite file, then a fresh PostgreSQL one."""
    if request.param == "sqlite":
        with sqlite_database(tmp_path) as url:
            yield url
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> Iterator[str]:
    """Yield the async URL of a new SQLite file, for tests where the database does not matter."""
    with sqlite_database(tmp_path) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Yield the async URL of a fresh PostgreSQL database, for PostgreSQL-only tests."""
    with postgres_database() as url:
        yield url
