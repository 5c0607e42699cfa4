"""The database handle: engine set-up, connection failures named without a password, no
fallback, concurrent start-ups."""

import asyncio
import os
import re
import stat
from pathlib import Path

import pytest

from services.portfolio.config import PortfolioSettings
from services.portfolio.db import Database, describe_database
from services.portfolio.errors import ConfigurationError, DatabaseUnavailableError
from tests.portfolio.conftest import make_settings


async def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(sqlite_url):
    database = await Database.open(make_settings(sqlite_url))
    try:
        async with database.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10_000
    finally:
        await database.close()


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("url", "named"),
    [
        (
            "postgresql+asyncpg://postgres:pw-s3cret@127.0.0.1:1/portfolio",
            "'portfolio' at 127.0.0.1:1",
        ),
        (
            "postgresql+asyncpg://postgres:pw-s3cret@127.0.0.1:5432/no_such_db_here",
            "'no_such_db_here' at 127.0.0.1:5432",
        ),
    ],
)
async def test_unreachable_postgres_is_one_clear_error_without_the_password(url, named):
    with pytest.raises(DatabaseUnavailableError) as caught:
        await Database.open(PortfolioSettings(database_url=url))
    message = str(caught.value)
    assert named in message
    assert "PostgreSQL" in message
    assert "pw-s3cret" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


async def test_unopenable_sqlite_file_is_a_clear_error_and_no_fallback(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/missing-dir/portfolio.db"
    with pytest.raises(DatabaseUnavailableError, match=re.escape("missing-dir/portfolio.db")):
        await Database.open(PortfolioSettings(database_url=url))
    assert not (tmp_path / "missing-dir").exists()


@pytest.mark.parametrize("url", ["mysql://db/x", "postgresql://u@h/db", "not a url"])
async def test_unsupported_database_urls_are_refused(url):
    with pytest.raises(ConfigurationError, match="PORTFOLIO_DATABASE_URL"):
        await Database.open(PortfolioSettings(database_url=url))


def test_database_description_never_shows_the_password():
    from sqlalchemy.engine import make_url

    described = describe_database(make_url("postgresql+asyncpg://u:topsecret@db.internal:6543/pf"))
    assert described == "PostgreSQL database 'pf' at db.internal:6543"


async def _state(database: Database) -> tuple[str, str | None]:
    async with database.engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        version = (await conn.exec_driver_sql("SELECT version_num FROM alembic_version")).scalar()
    return mode, version


async def test_concurrent_start_ups_on_new_sqlite_files_never_find_it_locked(tmp_path):
    # Both switch a brand-new file to WAL; SQLite refuses the loser at once, without its
    # busy timeout. The race is narrow, so try it on many new files.
    for attempt in range(60):
        path = tmp_path / f"race-{attempt}.db"
        settings = make_settings(f"sqlite+aiosqlite:///{path}")
        first, second = await asyncio.gather(Database.open(settings), Database.open(settings))
        try:
            # Both came up on the same file, switched to WAL and migrated once to the
            # same revision, and each sees what the other writes.
            (first_mode, first_version), (second_mode, second_version) = await asyncio.gather(
                _state(first), _state(second)
            )
            assert (first_mode, second_mode) == ("wal", "wal")
            assert first_version is not None
            assert first_version == second_version
            async with first.engine.begin() as conn:
                await conn.exec_driver_sql("CREATE TABLE seen (n INTEGER)")
                await conn.exec_driver_sql(f"INSERT INTO seen VALUES ({attempt})")
            async with second.engine.connect() as conn:
                seen = (await conn.exec_driver_sql("SELECT n FROM seen")).scalars().all()
            assert seen == [attempt]
            assert Path(f"{path}-wal").exists()
        finally:
            await first.close()
            await second.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_new_sqlite_database_and_its_wal_and_shm_are_owner_only(tmp_path):
    # With the usual umask (022) SQLite alone would create all three 0644: world-readable
    # password and API-key hashes.
    old_umask = os.umask(0o022)
    try:
        path = tmp_path / "identity.db"
        database = await Database.open(make_settings(f"sqlite+aiosqlite:///{path}"))
        try:
            async with database.engine.begin() as conn:
                await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
                await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
            assert wal.exists()
            assert shm.exists()
            assert {_mode(path), _mode(wal), _mode(shm)} == {0o600}
        finally:
            await database.close()
    finally:
        os.umask(old_umask)


async def test_an_existing_world_readable_sqlite_database_is_made_owner_only(tmp_path):
    path = tmp_path / "identity.db"
    first = await Database.open(make_settings(f"sqlite+aiosqlite:///{path}"))
    await first.close()
    for file in tmp_path.iterdir():
        file.chmod(0o644)
    database = await Database.open(make_settings(f"sqlite+aiosqlite:///{path}"))
    try:
        assert {_mode(file) for file in tmp_path.iterdir()} == {0o600}
    finally:
        await database.close()
