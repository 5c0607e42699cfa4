"""`GET /positions`, `GET /positions/{symbol}` and `GET /summary` over HTTP."""

import pytest

from tests.portfolio.callers import as_caller


async def trade(client, symbol, side, quantity, price, caller=None) -> None:
    body = {"symbol": symbol, "side": side, "quantity": quantity, "price": price}
    response = await client.post("/trades", json=body, headers=caller or as_caller())
    assert response.status_code == 201, response.text


# GET /positions.


async def test_no_trades_means_no_positions(client):
    response = await client.get("/positions", headers=as_caller())
    assert response.status_code == 200
    assert response.json() == {"positions": []}


async def test_open_positions_are_listed_by_symbol_and_closed_ones_left_out(client):
    await trade(client, "SOL-USD", "buy", "10", "20")
    await trade(client, "btc/usd", "buy", "0.5", "60000")
    await trade(client, "ETH-USD", "buy", "1", "3000")
    await trade(client, "ETH-USD", "sell", "1", "3100")
    positions = (await client.get("/positions", headers=as_caller())).json()["positions"]
    assert [(p["symbol"], p["quantity"]) for p in positions] == [
        ("BTC-USD", "0.5"),
        ("SOL-USD", "10"),
    ]
    assert positions[1] == {
        **positions[1],
        "average_cost": "20",
        "cost_basis": "200",
        "realized_pnl": "0",
        "last_price": "20",
        "trade_count": 1,
    }


async def test_each_caller_sees_only_their_own_positions(client):
    await trade(client, "BTC-USD", "buy", "1", "100")
    await trade(client, "BTC-USD", "buy", "4", "90", caller=as_caller("bob"))
    mine = (await client.get("/positions", headers=as_caller())).json()["positions"]
    bobs = (await client.get("/positions", headers=as_caller("bob"))).json()["positions"]
    assert [p["quantity"] for p in mine] == ["1"]
    assert [p["quantity"] for p in bobs] == ["4"]


# GET /positions/{symbol}.


@pytest.mark.parametrize("path", ["BTC-USD", "btc-usd", "BTC/USD", "btc%2Fusd"])
async def test_one_position_is_found_by_either_symbol_spelling(any_client, path):
    await trade(any_client, "BTC-USD", "buy", "2", "100")
    response = await any_client.get(f"/positions/{path}", headers=as_caller())
    assert response.status_code == 200
    position = response.json()["position"]
    assert (position["symbol"], position["quantity"]) == ("BTC-USD", "2")


async def test_a_symbol_never_traded_is_not_found(client):
    response = await client.get("/positions/XRP-USD", headers=as_caller())
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert "XRP-USD" in error["message"]


async def test_a_closed_position_is_not_found(client):
    await trade(client, "BTC-USD", "buy", "1", "100")
    await trade(client, "BTC-USD", "sell", "1", "90")
    response = await client.get("/positions/BTC-USD", headers=as_caller())
    assert response.status_code == 404


async def test_another_callers_position_is_not_found(client):
    await trade(client, "BTC-USD", "buy", "1", "100", caller=as_caller("bob"))
    response = await client.get("/positions/BTC-USD", headers=as_caller())
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["BTC", "BTC-USD-EUR", "BTC_USD", "%E2%82%AC-USD"])
async def test_a_malformed_symbol_is_refused_by_name(any_client, path):
    response = await any_client.get(f"/positions/{path}", headers=as_caller())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == ["symbol"]


# GET /summary.


async def test_the_summary_values_positions_at_their_last_price_and_totals_per_currency(client):
    await trade(client, "BTC-USD", "buy", "1", "100")
    await trade(client, "BTC-USD", "buy", "2", "130")
    await trade(client, "BTC-USD", "sell", "1.5", "150")  # realises (150 - 120) * 1.5 = 45
    await trade(client, "ETH-USD", "buy", "2", "10")
    await trade(client, "ETH-USD", "sell", "2", "7")  # closed: realises -6
    await trade(client, "SOL-USDT", "buy", "3", "0.1")
    summary = (await client.get("/summary", headers=as_caller())).json()

    by_symbol = {p["symbol"]: p for p in summary["positions"]}
    assert list(by_symbol) == ["BTC-USD", "ETH-USD", "SOL-USDT"]
    btc = by_symbol["BTC-USD"]
    assert {k: btc[k] for k in btc if k != "updated_at"} == {
        "symbol": "BTC-USD",
        "quote_currency": "USD",
        "quantity": "1.5",
        "average_cost": "120",
        "cost_basis": "180",
        "realized_pnl": "45",
        "last_price": "150",
        "market_value": "225",
        "unrealized_pnl": "45",
        "trade_count": 3,
    }
    eth = by_symbol["ETH-USD"]
    assert (eth["quantity"], eth["average_cost"], eth["realized_pnl"]) == ("0", None, "-6")
    assert (eth["market_value"], eth["unrealized_pnl"]) == ("0", "0")

    assert summary["totals"] == [
        {
            "quote_currency": "USD",
            "cost_basis": "180",
            "market_value": "225",
            "unrealized_pnl": "45",
            "realized_pnl": "39",
        },
        {
            "quote_currency": "USDT",
            "cost_basis": "0.3",
            "market_value": "0.3",
            "unrealized_pnl": "0",
            "realized_pnl": "0",
        },
    ]


async def test_an_empty_summary(client):
    response = await client.get("/summary", headers=as_caller())
    assert response.json() == {"positions": [], "totals": []}


async def test_a_refused_trade_leaves_no_trace_in_the_summary(client):
    response = await client.post(
        "/trades",
        json={"symbol": "DOGE-USD", "side": "sell", "quantity": "1", "price": "1"},
        headers=as_caller(),
    )
    assert response.status_code == 422
    assert (await client.get("/summary", headers=as_caller())).json()["positions"] == []
