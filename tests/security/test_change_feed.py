"""The identity change feed with two gateways: a change whose transaction commits late (it
waited on a row lock after it was stamped) still ends the old access on both replicas, and
fresh logins with the new roles work at once; on PostgreSQL and on SQLite.

Real processes: portfolio (identity store), a trading stub and two gateways that each follow
the feed; the test holds the user's row (PostgreSQL) or the database's write lock (SQLite)
to make the change wait, as a concurrent transaction would.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from devstack.databases import postgres_database, sqlite_database
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from services.portfolio.identity import PortfolioIdentityService
from tests.support.stack import fast_identity, service_urls, stack_env, start_portfolio_and_stub

PASSWORD = "a long enough change-feed password"
SYNC_SECONDS = "0.2"
# Longer than the old feed's 2 s grace plus several polls of both gateways.
LOCK_SECONDS = 4.0
# Bounds on waiting, far above what the work takes; never speed assertions.
PATIENCE_SECONDS = 30.0


@dataclass
class FeedStack:
    database_url: str
    identity: PortfolioIdentityService
    gateways: tuple[str, str]

    def user(self, *roles: str) -> str:
        name = f"feed-{uuid.uuid4().hex[:10]}"
        self.identity.create_user(name, PASSWORD, roles=list(roles))
        return name


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def feed_stack(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[FeedStack]:
    logs: Path = tmp_path_factory.mktemp("feed")
    with ExitStack() as exit_stack:
        if request.param == "sqlite":
            database_url = exit_stack.enter_context(sqlite_database(logs))
        else:
            database_url = exit_stack.enter_context(postgres_database())
        env = stack_env(database_url)
        identity = fast_identity(database_url)
        exit_stack.callback(identity.close)
        portfolio, stub = start_portfolio_and_stub(exit_stack, env, logs)
        env.update(service_urls(portfolio.url, stub.url))
        env["GATEWAY_IDENTITY_SYNC_SECONDS"] = SYNC_SECONDS
        gateways = tuple(
            exit_stack.enter_context(
                ServerProcess(GATEWAY_APP, env=env, log_path=logs / f"gateway-{n}.log")
            ).url
            for n in (1, 2)
        )
        yield FeedStack(database_url, identity, (gateways[0], gateways[1]))


@asynccontextmanager
async def holding_the_row(database_url: str, username: str) -> AsyncIterator[AsyncConnection]:
    """Hold `username`'s row (PostgreSQL) or the write lock (SQLite) until the block ends."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await conn.begin()
                await conn.execute(
                    text("SELECT id FROM user_accounts WHERE username = :name FOR UPDATE"),
                    {"name": username},
                )
            try:
                yield conn
            finally:
                await conn.rollback()
    finally:
        await engine.dispose()


async def bearer(client: httpx.AsyncClient, gateway: str, name: str) -> dict[str, str]:
    response = await client.post(
        gateway + "/auth/token", json={"username": name, "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def status(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> int:
    return (await client.get(url, headers=headers)).status_code


async def settles_to(client: httpx.AsyncClient, url: str, headers: dict[str, str], want: int):
    deadline = time.monotonic() + PATIENCE_SECONDS
    got = await status(client, url, headers)
    while got != want and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        got = await status(client, url, headers)
    return got


async def test_a_role_change_that_commits_late_ends_old_tokens_on_both_gateways(
    feed_stack: FeedStack,
):
    name = feed_stack.user("trading", "market")
    async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as client:
        old = [await bearer(client, gateway, name) for gateway in feed_stack.gateways]
        for gateway, headers in zip(feed_stack.gateways, old, strict=True):
            assert await status(client, gateway + "/api/trading/x", headers) == 200

        async with holding_the_row(feed_stack.database_url, name):
            change = asyncio.create_task(
                asyncio.to_thread(feed_stack.identity.set_roles, name, ["market"])
            )
            # The change is stamped now and waits; both gateways keep polling meanwhile.
            await asyncio.sleep(LOCK_SECONDS)
            assert not change.done()
        await change

        for gateway, headers in zip(feed_stack.gateways, old, strict=True):
            assert await settles_to(client, gateway + "/api/trading/x", headers, 401) == 401
            # Still refused a while later: the change was applied, not merely raced.
            await asyncio.sleep(1.0)
            assert await status(client, gateway + "/api/trading/x", headers) == 401
        # Fresh logins carry the new roles and work at once on both replicas.
        for gateway in feed_stack.gateways:
            fresh = await bearer(client, gateway, name)
            me = await client.get(gateway + "/auth/me", headers=fresh)
            assert me.status_code == 200, me.text
            assert me.json()["roles"] == ["market"]
            assert await status(client, gateway + "/api/trading/x", fresh) == 403


async def test_a_deactivation_that_commits_late_ends_tokens_on_both_gateways(
    feed_stack: FeedStack,
):
    name = feed_stack.user("trading")
    async with httpx.AsyncClient(timeout=PATIENCE_SECONDS) as client:
        old = [await bearer(client, gateway, name) for gateway in feed_stack.gateways]
        async with holding_the_row(feed_stack.database_url, name):
            change = asyncio.create_task(
                asyncio.to_thread(feed_stack.identity.deactivate_user, name)
            )
            await asyncio.sleep(LOCK_SECONDS)
        await change
        for gateway, headers in zip(feed_stack.gateways, old, strict=True):
            assert await settles_to(client, gateway + "/auth/me", headers, 401) == 401
