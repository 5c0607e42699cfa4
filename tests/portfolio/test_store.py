"""The database layer: engine, migrations, connection failures, indexed API-key lookup."""

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, insert, inspect, text

from devstack import REPO_ROOT
from services.portfolio import apikeys, migrations
from services.portfolio.config import DEFAULT_DATABASE_URL, PortfolioSettings
from services.portfolio.errors import ConfigurationError, DatabaseUnavailableError
from services.portfolio.models import Base, UserAccount
from services.portfolio.store import Database, describe_database
from tests.portfolio.conftest import PASSWORD, make_settings

HEAD = ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()


async def test_migrations_create_exactly_the_models_schema(database):
    def differences(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn), Base.metadata)

    async with database.engine.connect() as conn:
        assert await conn.run_sync(differences) == []
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert revision == HEAD


async def test_migrations_are_idempotent_and_keep_data(database, identity):
    await identity.create_user("keeper", PASSWORD, ["portfolio"])
    await migrations.upgrade(database.engine)
    assert [u.username for u in await identity.list_users()] == ["keeper"]


async def test_user_accounts_has_unique_indexes_on_username_and_api_key_hash(database):
    def indexes(sync_conn):
        return {
            ix["name"]: (ix["column_names"], ix["unique"])
            for ix in inspect(sync_conn).get_indexes("user_accounts")
        }

    async with database.engine.connect() as conn:
        found = await conn.run_sync(indexes)
    assert found["ix_user_accounts_username"] == (["username"], True)
    assert found["ix_user_accounts_api_key_hash"] == (["api_key_hash"], True)


async def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(sqlite_url):
    database = await Database.open(make_settings(sqlite_url))
    try:
        async with database.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
            assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 10_000
    finally:
        await database.close()


def test_default_database_is_the_repositorys_var_file_whatever_the_cwd(tmp_path):
    assert f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'portfolio.db'}" == DEFAULT_DATABASE_URL
    env = {"PATH": "/usr/bin:/bin"}
    script = "from services.portfolio.config import PortfolioSettings; print(PortfolioSettings().database_url.get_secret_value())"
    printed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == DEFAULT_DATABASE_URL


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


def test_settings_repr_never_shows_the_database_password():
    settings = PortfolioSettings(database_url="postgresql+asyncpg://u:topsecret@db/pf")
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings.model_dump())


def test_database_description_never_shows_the_password():
    from sqlalchemy.engine import make_url

    described = describe_database(make_url("postgresql+asyncpg://u:topsecret@db.internal:6543/pf"))
    assert described == "PostgreSQL database 'pf' at db.internal:6543"


async def test_api_key_lookup_is_one_indexed_query_among_10000_users(database, identity):
    now = datetime.now(UTC)
    rows = [
        {
            "username": f"user{i:05d}",
            "password_hash": "$argon2id$placeholder",
            "roles": ["market"],
            "is_active": True,
            "must_change_password": False,
            "created_at": now,
            "updated_at": now,
            "password_changed_at": now,
            "api_key_hash": apikeys.digest(f"bulk-key-{i:05d}-" + "x" * 32),
            "api_key_id": apikeys.digest(f"bulk-key-{i:05d}-" + "x" * 32)[:16],
            "failed_login_count": 0,
        }
        for i in range(10_000)
    ]
    async with database.sessions.begin() as session:
        await session.execute(insert(UserAccount), rows)
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")

    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    key = "bulk-key-07777-" + "x" * 32
    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        user = await identity.verify_api_key(key)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    assert user.username == "user07777"
    assert len(statements) == 1, statements

    statement, parameters = statements[0]
    async with database.engine.connect() as conn:
        if database.engine.dialect.name == "sqlite":
            plan = " ".join(
                str(row[-1])
                for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "USING INDEX ix_user_accounts_api_key_hash" in plan, plan
        else:
            plan = " ".join(
                str(row[0])
                for row in await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "Index Scan using ix_user_accounts_api_key_hash" in plan, plan
        assert "SCAN user_accounts" not in plan
        assert "Seq Scan" not in plan


async def test_concurrent_start_ups_on_new_sqlite_files_never_find_it_locked(tmp_path):
    # Both switch a brand-new file to WAL; SQLite refuses the loser at once, without its
    # busy timeout. The race is narrow, so try it on many new files.
    for attempt in range(60):
        settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / f'race-{attempt}.db'}")
        first, second = await asyncio.gather(Database.open(settings), Database.open(settings))
        await first.close()
        await second.close()


async def test_concurrent_start_ups_migrate_a_new_database_once(settings):
    # The app and an operator script may both find the database new at the same moment.
    first, second = await asyncio.gather(Database.open(settings), Database.open(settings))
    try:
        async with first.engine.connect() as conn:
            versions = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
        assert [tuple(row) for row in versions] == [(HEAD,)]
    finally:
        await first.close()
        await second.close()
