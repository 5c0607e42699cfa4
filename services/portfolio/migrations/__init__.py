"""Alembic migrations of the portfolio database, run programmatically (no alembic.ini)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent
# Serialises concurrent start-ups (app and operator script) on one PostgreSQL database.
_ADVISORY_LOCK_KEY = 0x1C7_0001


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an Alembic config for this package, bound to `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the database schema to the newest revision."""
    async with engine.begin() as conn:
        # Two processes may find a new database at once (the app and an operator script):
        # take the database's write lock first so the second one waits, then sees head.
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        elif conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(_upgrade)
