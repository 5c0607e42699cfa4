"""The portfolio's metrics move with real traffic: logins, password hashing, trades, the pool."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from shutil import rmtree

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from devstack.databases import postgres_database
from devstack.servers import ServerProcess
from services.portfolio import metrics
from services.portfolio.app import create_app
from services.portfolio.db import create_engine
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY, as_caller
from tests.portfolio.conftest import CHEAP_ARGON2_ENV, env_secrets, make_settings
from tests.portfolio.http import SERVICE_TOKEN
from tests.support.metrics import label_values, new_scrape_token, parse, scrape, value
from tests.support.tcp_proxy import TcpProxy

TOKEN = new_scrape_token()
PASSWORD = "a long enough test password"
POOL_SAMPLE = "portfolio_db_pool_connections"
HELD = 3  # connections held at once, fewer than the pool's 5
BUY = {"symbol": "BTC-USD", "side": "buy", "quantity": "1", "price": "100"}


@pytest.fixture
async def portfolio(database_url: str) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    secrets = {
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
        "METRICS_SCRAPE_TOKEN": TOKEN.get_secret_value(),
    }
    app = create_app(make_settings(database_url), secrets_manager=env_secrets(secrets))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://portfolio") as client:
            yield app, client


def moved(after, before, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_logins_are_counted_by_outcome_and_their_hashing_timed(portfolio):
    app, client = portfolio
    await app.state.runtime.identity.create_user("mallory-metrics", PASSWORD, ["portfolio"])
    before = await scrape(client, TOKEN)
    service = {"X-Service-Token": SERVICE_TOKEN}
    path = "/internal/identity/authenticate"
    good = {"username": "mallory-metrics", "password": PASSWORD}
    bad = {"username": "mallory-metrics", "password": "not the password at all"}
    assert (await client.post(path, json=good, headers=service)).status_code == 200
    assert (await client.post(path, json=bad, headers=service)).status_code == 401
    after = await scrape(client, TOKEN)
    assert moved(after, before, "portfolio_logins_total", outcome="success") == 1
    assert moved(after, before, "portfolio_logins_total", outcome="invalid_credentials") == 1
    assert moved(after, before, "portfolio_password_hash_duration_seconds_count") == 2
    assert value(after, "portfolio_password_hashes_running") == 0
    assert "mallory-metrics" not in label_values(after)


async def test_a_booked_trade_is_counted_once_and_a_replay_not_again(portfolio):
    _, client = portfolio
    before = await scrape(client, TOKEN)
    headers = {**as_caller("trent-metrics"), "Idempotency-Key": "metrics-trade-1"}
    for _ in range(2):
        assert (await client.post("/trades", json=BUY, headers=headers)).status_code in (200, 201)
    sell = {**BUY, "side": "sell", "quantity": "0.5"}
    assert (await client.post("/trades", json=sell, headers=as_caller("trent-metrics"))).is_success
    after = await scrape(client, TOKEN)
    assert moved(after, before, "portfolio_trades_booked_total", side="buy") == 1
    assert moved(after, before, "portfolio_trades_booked_total", side="sell") == 1
    assert "trent-metrics" not in label_values(after)


async def test_the_pool_gauges_follow_connections(portfolio):
    app, client = portfolio
    engine = app.state.runtime.database.engine
    pool = "portfolio_db_pool_connections"
    assert (await client.get("/positions", headers=as_caller("peggy-metrics"))).status_code == 200
    idle = await scrape(client, TOKEN)
    # Between requests every connection the request took is back in the pool, and open.
    assert value(idle, pool, state="in_use") == 0
    assert value(idle, pool, state="open") >= 1
    async with contextlib.AsyncExitStack() as held:
        for _ in range(HELD):
            connection = await held.enter_async_context(engine.connect())
            await connection.execute(text("SELECT 1"))
        busy = await scrape(client, TOKEN)
        assert value(busy, pool, state="in_use") == HELD
        assert value(busy, pool, state="open") >= HELD
    released = await scrape(client, TOKEN)
    assert value(released, pool, state="in_use") == 0
    assert value(released, pool, state="open") >= HELD  # kept open for the next requests


async def test_the_pool_gauges_are_current_without_a_scrape(portfolio):
    """Workers that a scrape does not reach (multiprocess mode) keep their gauges current."""
    app, client = portfolio
    engine = app.state.runtime.database.engine
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        await asyncio.sleep(0)  # the gauges are read once the pool's move is over
        assert REGISTRY.get_sample_value(POOL_SAMPLE, {"state": "in_use"}) == 1
    await asyncio.sleep(0)
    assert REGISTRY.get_sample_value(POOL_SAMPLE, {"state": "in_use"}) == 0
    assert (await client.get("/positions", headers=as_caller("peggy-metrics"))).status_code == 200
    await asyncio.sleep(0)
    assert REGISTRY.get_sample_value(POOL_SAMPLE, {"state": "in_use"}) == 0


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def breakable_database(request, tmp_path):
    """Yield (settings, break) for a database `break()` makes unreachable: a SQLite file whose
    folder is removed, or PostgreSQL behind a proxy that is cut."""
    if request.param == "sqlite":
        folder = tmp_path / "gone"
        folder.mkdir()
        yield make_settings(f"sqlite+aiosqlite:///{folder / 'ledger.db'}"), lambda: rmtree(folder)
        return
    with postgres_database() as url, TcpProxy(5432) as proxy:
        through = make_url(url).set(port=proxy.port).render_as_string(hide_password=False)
        yield make_settings(through), proxy.cut


async def test_a_failed_reconnection_leaves_no_connection_in_use(breakable_database):
    """A pooled connection that cannot be re-opened is handed back without ever being handed
    out (SQLAlchemy fires `checkin` alone): counting events took the gauge below zero."""
    settings, cut = breakable_database
    engine = create_engine(settings)
    metrics.watch_pool(engine)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            await connection.invalidate()
        cut()
        for _ in range(3):
            with pytest.raises((DBAPIError, OSError)):
                async with engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        await asyncio.sleep(0)
        assert REGISTRY.get_sample_value(POOL_SAMPLE, {"state": "in_use"}) == 0
    finally:
        await engine.dispose()


@pytest.mark.e2e
def test_two_processes_report_the_pool_of_both(sqlite_url, tmp_path):
    """In multiprocess mode every scrape, whichever process answers it, sums both processes'
    pools: each keeps its gauges current, not only the one a scrape reaches. (The portfolio
    refuses a second `--workers` on one socket, see shared/workers.py; two processes on two
    ports share one PROMETHEUS_MULTIPROC_DIR the same way workers do.)"""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    env = {
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
        "METRICS_SCRAPE_TOKEN": TOKEN.get_secret_value(),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "SECRETS_PROVIDER": "env",
        **CHEAP_ARGON2_ENV,
    }
    scrape_headers = {"Authorization": f"Bearer {TOKEN.get_secret_value()}"}
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(
                ServerProcess(
                    "services.portfolio.app:app",
                    env=env,
                    log_path=tmp_path / f"portfolio-{index}.log",
                )
            )
            for index in range(2)
        ]
        for server in servers:
            with httpx.Client(base_url=server.url) as http:
                for _ in range(5):
                    assert http.get("/positions", headers=as_caller("olga-metrics")).is_success
        for server in servers:
            with httpx.Client(base_url=server.url) as http:
                samples = parse(http.get("/metrics", headers=scrape_headers).text)
            assert value(samples, POOL_SAMPLE, state="in_use") == 0
            # Each process opened a connection at start-up (its migration check) and keeps it.
            assert value(samples, POOL_SAMPLE, state="open") >= 2
        gauges = list(multiproc.glob("gauge_livesum_*.db"))
        assert len(gauges) == 2, "one live gauge file per process"
