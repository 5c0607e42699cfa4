"""Many concurrent trades through a real uvicorn process: nothing lost, nothing booked twice."""

import asyncio
from collections.abc import Iterator
from decimal import Decimal

import httpx
import pytest

from devstack.servers import ServerProcess
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY, as_caller
from tests.portfolio.http import SERVICE_TOKEN

pytestmark = pytest.mark.e2e

CONCURRENCY = 50


@pytest.fixture
def portfolio_url(database_url, tmp_path) -> Iterator[str]:
    env = {
        "PORTFOLIO_DATABASE_URL": database_url,
        "SECRETS_PROVIDER": "env",
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
    }
    log = tmp_path / "portfolio.log"
    with ServerProcess("services.portfolio.app:app", env=env, log_path=log) as server:
        yield server.url


def client(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CONCURRENCY)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=60, headers=as_caller("alice"))


async def test_concurrent_trades_on_one_position_lose_nothing(portfolio_url):
    async with client(portfolio_url) as http:
        opening = await http.post(
            "/trades", json={"symbol": "BTC-USD", "side": "buy", "quantity": "100", "price": "10"}
        )
        assert opening.status_code == 201
        # Half buy 2 @ 12, half sell 1 @ 15: every interleaving keeps the position positive.
        orders = [
            {"symbol": "BTC-USD", "side": "buy", "quantity": "2", "price": "12"}
            if i % 2 == 0
            else {"symbol": "btc/usd", "side": "sell", "quantity": "1", "price": "15"}
            for i in range(CONCURRENCY)
        ]
        responses = await asyncio.gather(*(http.post("/trades", json=o) for o in orders))
        position = (await http.get("/positions/BTC-USD")).json()["position"]
        trades = (await http.get("/trades", params={"limit": 500})).json()["trades"]

    assert [r.status_code for r in responses] == [201] * CONCURRENCY
    buys = sells = CONCURRENCY // 2
    assert Decimal(position["quantity"]) == 100 + 2 * buys - sells
    assert position["trade_count"] == 1 + CONCURRENCY
    assert len(trades) == 1 + CONCURRENCY
    assert len({t["id"] for t in trades}) == len(trades)
    # The realised P&L depends on the interleaving; the books must still balance exactly.
    realized = sum(Decimal(t["realized_pnl"]) for t in trades if t["realized_pnl"] is not None)
    assert Decimal(position["realized_pnl"]) == realized
    bought = 100 * 10 + buys * 2 * 12
    assert Decimal(position["cost_basis"]) + sells * 15 - realized == bought


async def test_concurrent_retries_with_one_idempotency_key_book_once(portfolio_url):
    body = {"symbol": "ETH-USD", "side": "buy", "quantity": "0.5", "price": "2000"}
    async with client(portfolio_url) as http:
        responses = await asyncio.gather(
            *(
                http.post("/trades", json=body, headers={"Idempotency-Key": "retry-1"})
                for _ in range(CONCURRENCY // 2)
            )
        )
        position = (await http.get("/positions/ETH-USD")).json()["position"]
        trades = (await http.get("/trades")).json()["trades"]

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (CONCURRENCY // 2 - 1) + [201]
    assert all(
        r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200
    )
    assert len({r.json()["trade"]["id"] for r in responses}) == 1
    assert position["quantity"] == "0.5"
    assert len(trades) == 1
