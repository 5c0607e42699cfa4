"""Throwaway state on the local servers `make services` starts: a PostgreSQL database, a
SQLite file, a key prefix on Redis; each gone afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import redis
from sqlalchemy.engine import make_url

# The server the tests and the bench use: 127.0.0.1:5432, user postgres, trust auth,
# database `test`.
POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
# The shared Redis every test may use; never stopped by a test.
SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create an empty database beside `test`, yield its async URL, drop it afterwards."""
    name = f"lct_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    """Yield the async URL of a new SQLite file in `directory`."""
    path = directory / f"portfolio-{uuid.uuid4().hex[:8]}.db"
    yield f"sqlite+aiosqlite:///{path}"


def unique_prefix() -> str:
    """Return a Redis key prefix no other run uses."""
    return f"lct-test:{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under `prefix`."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)


@contextmanager
def shared_prefix() -> Iterator[str]:
    """Yield a fresh prefix on the shared Redis and delete its keys afterwards."""
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        delete_prefix(SHARED_REDIS_URL, prefix)
