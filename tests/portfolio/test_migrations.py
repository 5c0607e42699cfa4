"""The one migration history of both domains: it builds exactly the models' schema, keeps
data, and runs once when two processes find a new database together."""

import asyncio
from datetime import UTC, datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from services.portfolio import migrations
from services.portfolio.accounts.models import UserAccount
from services.portfolio.db import Base, Database, create_engine
from services.portfolio.trading.models import Position, Trade
from tests.portfolio.conftest import PASSWORD

HEAD = ScriptDirectory.from_config(migrations.alembic_config()).get_current_head()


def test_the_metadata_holds_the_tables_of_both_domains():
    assert {UserAccount.__table__, Position.__table__, Trade.__table__} <= set(
        Base.metadata.sorted_tables
    )


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


async def test_0004_turns_each_stamped_user_into_a_feed_entry_oldest_first(settings):
    # A database at 0003 with two users whose access changed and one whose did not.
    engine = create_engine(settings)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(
                lambda sync: command.upgrade(migrations.alembic_config(sync), "0003")
            )
            for name, stamp in (
                ("later", "2025-01-02 00:00:00"),
                ("never", None),
                ("earlier", "2025-01-01 00:00:00"),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO user_accounts (username, password_hash, roles, is_active, "
                        "must_change_password, created_at, updated_at, password_changed_at, "
                        "failed_login_count, access_changed_at) VALUES (:name, 'x', :roles, "
                        ":active, :no, :at, :at, :at, 0, :stamp)"
                    ),
                    {
                        "name": name,
                        "roles": '["trading"]',
                        "active": name != "earlier",
                        "no": False,
                        "at": datetime(2024, 12, 1, tzinfo=UTC),
                        "stamp": None
                        if stamp is None
                        else datetime.fromisoformat(stamp).replace(tzinfo=UTC),
                    },
                )
        await migrations.upgrade(engine)
        async with engine.connect() as conn:
            entries = (
                await conn.execute(
                    text("SELECT id, username, is_active FROM access_changes ORDER BY id")
                )
            ).all()
            seqs = dict(
                (await conn.execute(text("SELECT username, access_seq FROM user_accounts"))).all()
            )
        assert [tuple(row) for row in entries] == [(1, "earlier", False), (2, "later", True)]
        assert seqs == {"earlier": 1, "later": 2, "never": None}
    finally:
        await engine.dispose()
