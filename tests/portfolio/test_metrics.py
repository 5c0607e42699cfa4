"""The portfolio's metrics move with real traffic: logins, password hashing, trades, the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from services.portfolio.app import create_app
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY, as_caller
from tests.portfolio.conftest import env_secrets, make_settings
from tests.portfolio.http import SERVICE_TOKEN
from tests.support.metrics import label_values, new_scrape_token, scrape, value

TOKEN = new_scrape_token()
PASSWORD = "a long enough test password"
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
    _, client = portfolio
    before = await scrape(client, TOKEN)
    assert (await client.get("/positions", headers=as_caller("peggy-metrics"))).status_code == 200
    after = await scrape(client, TOKEN)
    # Between requests every connection the request took is back in the pool (the gauge is
    # process-wide: other engines of this test process may count too), and one is open.
    in_use = "portfolio_db_pool_connections"
    assert value(after, in_use, state="in_use") == value(before, in_use, state="in_use")
    assert value(after, "portfolio_db_pool_connections", state="open") >= 1
