"""The one migration history of both domains: it builds exactly the models' schema, keeps
data, and runs once when two processes find a new database together."""

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from services.portfolio import migrations
from services.portfolio.accounts.models import UserAccount
from services.portfolio.db import Base, Database
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
