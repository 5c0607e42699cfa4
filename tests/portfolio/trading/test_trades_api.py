"""`POST /trades` and `GET /trades` over HTTP: identity from the assertion only, exact JSON
decimals, field-naming errors, Idempotency-Key replays, pagination."""

import time

import httpx
import pytest

from services.portfolio.app import create_app
from services.portfolio.errors import ConfigurationError
from shared.assertion import AssertionSigner
from shared.keys import generate_private_key
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY, as_caller, assertion
from tests.portfolio.conftest import env_secrets, make_settings
from tests.portfolio.http import SERVICE_TOKEN

BUY = {"symbol": "BTC-USD", "side": "buy", "quantity": "1", "price": "100"}


async def post_trade(client, body=None, headers=None, **overrides) -> httpx.Response:
    response: httpx.Response = await client.post(
        "/trades", json={**(body or BUY), **overrides}, headers={**as_caller(), **(headers or {})}
    )
    return response


# Identity.


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/positions"),
        ("GET", "/positions/BTC-USD"),
        ("POST", "/trades"),
        ("GET", "/trades"),
        ("GET", "/summary"),
    ],
)
async def test_every_portfolio_endpoint_needs_the_assertion(any_client, method, path):
    response = await any_client.request(method, path, json=BUY)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_identity_headers_a_client_makes_up_are_ignored(any_client):
    response = await any_client.get(
        "/positions", headers={"X-User": "alice", "X-Roles": "admin", "X-Remote-User": "alice"}
    )
    assert response.status_code == 401


async def test_the_service_token_does_not_stand_in_for_the_assertion(any_client):
    response = await any_client.get("/positions", headers={"X-Service-Token": SERVICE_TOKEN})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("mint", "reason"),
    [
        pytest.param(lambda: assertion(service="trading"), "audience", id="other-audience"),
        pytest.param(
            lambda: assertion(signer=AssertionSigner(generate_private_key())),
            "unknown key",
            id="unknown-signer",
        ),
        pytest.param(lambda: assertion(now=time.time() - 3600), "expired", id="expired"),
        pytest.param(lambda: "not.a.jwt", "malformed", id="garbage"),
    ],
)
async def test_an_assertion_that_does_not_verify_is_refused(any_client, mint, reason):
    token = mint()
    response = await any_client.get("/positions", headers={"X-Identity-Assertion": token})
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "invalid_token"
    assert reason in error["message"].lower()
    assert token not in error["message"]


async def test_a_caller_without_the_portfolio_role_is_forbidden(any_client):
    response = await any_client.get("/positions", headers=as_caller("tess", ["trading"]))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_admins_reach_their_own_portfolio(client):
    await post_trade(client, headers=as_caller("root", ["admin"]))
    response = await client.get("/positions", headers=as_caller("root", ["admin"]))
    assert [p["symbol"] for p in response.json()["positions"]] == ["BTC-USD"]


async def test_the_internal_identity_api_does_not_accept_an_assertion(any_client):
    response = await any_client.get(
        "/internal/identity/users", headers=as_caller("root", ["admin"])
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


# Start-up.


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "GATEWAY_ASSERTION_PUBLIC_KEY"),
        ({"GATEWAY_ASSERTION_PUBLIC_KEY": "not-a-key"}, "not an Ed25519 public key"),
    ],
)
async def test_the_service_does_not_start_without_a_usable_assertion_key(
    sqlite_url, environ, expected
):
    secrets = env_secrets({"IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN, **environ})
    app = create_app(make_settings(sqlite_url), secrets_manager=secrets)
    with pytest.raises(ConfigurationError, match=expected):
        async with app.router.lifespan_context(app):
            pass


async def test_the_assertion_key_is_read_from_the_secrets_layer(sqlite_url):
    secrets = env_secrets(
        {
            "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
            "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
        }
    )
    app = create_app(make_settings(sqlite_url), secrets_manager=secrets)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as client:
            assert (await client.get("/positions", headers=as_caller())).status_code == 200


# POST /trades.


async def test_a_trade_is_booked_with_201_and_decimals_as_strings(client):
    response = await post_trade(client, symbol="eth/usdt", quantity="2.50", price="1999.99")
    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    body = response.json()
    assert body["replayed"] is False
    trade = body["trade"]
    assert {k: trade[k] for k in ("symbol", "side", "quantity", "price", "value")} == {
        "symbol": "ETH-USDT",
        "side": "buy",
        "quantity": "2.5",
        "price": "1999.99",
        "value": "4999.975",
    }
    assert trade["realized_pnl"] is None
    assert body["position"]["quantity"] == "2.5"
    assert body["position"]["average_cost"] == "1999.99"


async def test_json_numbers_are_read_exactly_never_through_a_float(client):
    raw = b'{"symbol": "BTC-USD", "side": "buy", "quantity": 0.123456789012345678, "price": 3}'
    response = await client.post("/trades", content=raw, headers=as_caller())
    assert response.status_code == 201, response.text
    assert response.json()["trade"]["quantity"] == "0.123456789012345678"
    assert response.json()["trade"]["value"] == "0.370370367037037034"


async def test_a_sell_realises_pnl_at_average_cost(client):
    await post_trade(client, quantity="1", price="100")
    await post_trade(client, quantity="2", price="130")
    response = await post_trade(client, side="sell", quantity="1.5", price="150")
    assert response.status_code == 201
    assert response.json()["trade"]["realized_pnl"] == "45"
    assert response.json()["position"] == {
        **response.json()["position"],
        "quantity": "1.5",
        "average_cost": "120",
        "cost_basis": "180",
        "realized_pnl": "45",
        "trade_count": 3,
    }


async def test_a_sell_beyond_the_position_is_refused_naming_quantity(client):
    await post_trade(client, quantity="1")
    response = await post_trade(client, side="sell", quantity="1.000000000000000001")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == ["quantity"]
    assert "holds 1" in error["message"]
    assert "short selling is not supported" in error["message"]


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        ({"symbol": "BTCUSD"}, ["symbol"]),
        ({"symbol": 42}, ["symbol"]),
        ({"side": "hold"}, ["side"]),
        ({"quantity": "0"}, ["quantity"]),
        ({"quantity": "-1"}, ["quantity"]),
        ({"quantity": "lots"}, ["quantity"]),
        ({"quantity": True}, ["quantity"]),
        ({"price": "0.0000000000000000001"}, ["price"]),
        ({"price": "1e16"}, ["price"]),
        ({"price": None}, ["price"]),
        ({"note": "hi"}, ["note"]),
        ({"side": "sell", "price": "-3"}, ["price"]),
    ],
)
async def test_bad_fields_are_refused_by_name(any_client, overrides, fields):
    response = await post_trade(any_client, **overrides)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == fields
    assert all(f"{field}:" in error["message"] for field in fields)


async def test_a_missing_field_is_named(any_client):
    response = await any_client.post(
        "/trades", json={"symbol": "BTC-USD", "side": "buy"}, headers=as_caller()
    )
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == ["quantity", "price"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "a JSON request body is required"),
        (b"{not json", "not valid JSON"),
        (b'{"symbol": "BTC-USD", "side": "buy", "quantity": NaN, "price": 1}', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_refused(any_client, raw, message):
    response = await any_client.post("/trades", content=raw, headers=as_caller())
    assert response.status_code == 422
    assert message in response.json()["error"]["message"]


async def test_an_oversized_body_is_refused_unread(any_client):
    raw = b'{"symbol": "BTC-USD", "pad": "' + b"x" * 20_000 + b'"}'
    response = await any_client.post("/trades", content=raw, headers=as_caller())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "16384 bytes" in response.json()["error"]["message"]


# Idempotency-Key.


async def test_a_retry_with_the_same_key_replays_the_first_trade(client):
    key = {"Idempotency-Key": "7f9c2c1e-retry"}
    first = await post_trade(client, headers=key)
    again = await post_trade(client, headers=key, quantity="1.000")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["replayed"] is True
    assert again.json()["trade"] == first.json()["trade"]
    trades = (await client.get("/trades", headers=as_caller())).json()["trades"]
    assert len(trades) == 1


async def test_a_key_reused_for_another_trade_is_a_conflict(client):
    await post_trade(client, headers={"Idempotency-Key": "k"})
    response = await post_trade(client, headers={"Idempotency-Key": "k"}, price="101")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert "Idempotency-Key" in response.json()["error"]["message"]


async def test_a_malformed_key_is_refused_by_name(any_client):
    response = await post_trade(any_client, headers={"Idempotency-Key": "k" * 201})
    assert response.status_code == 422
    assert response.json()["error"]["fields"] == ["Idempotency-Key"]


# GET /trades.


async def test_trades_are_paged_newest_first(client):
    for price in ("1", "2", "3"):
        await post_trade(client, price=price)
    first = (await client.get("/trades", params={"limit": 2}, headers=as_caller())).json()
    assert [t["price"] for t in first["trades"]] == ["3", "2"]
    rest = await client.get(
        "/trades", params={"limit": 2, "cursor": first["next_cursor"]}, headers=as_caller()
    )
    assert [t["price"] for t in rest.json()["trades"]] == ["1"]
    assert rest.json()["next_cursor"] is None


async def test_trades_default_to_pages_of_50(client):
    for _ in range(51):
        await post_trade(client)
    page = (await client.get("/trades", headers=as_caller())).json()
    assert len(page["trades"]) == 50
    assert page["next_cursor"] is not None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "xyz"}, "cursor"),
        ({"symbol": "BTC"}, "symbol"),
    ],
)
async def test_bad_page_parameters_are_refused_by_name(any_client, params, field):
    response = await any_client.get("/trades", params=params, headers=as_caller())
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0].endswith(field)


async def test_a_caller_sees_only_their_own_trades(client):
    await post_trade(client)
    response = await client.get("/trades", headers=as_caller("bob"))
    assert response.json() == {"trades": [], "next_cursor": None}
