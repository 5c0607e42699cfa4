"""The portfolio page through the real gateway and portfolio service: what a trader sees."""

import asyncio
import re

import httpx
import pytest

from tests.frontend.stack import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

KEY_FIELD = re.compile(r'name="idempotency_key" value="([^"]+)"')
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


async def api_token(stack, username: str) -> str:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        response = await gateway.post(
            "/auth/token", json={"username": username, "password": PASSWORD}
        )
    return str(response.json()["access_token"])


async def book(stack, username: str, *trades: tuple[str, str, str, str]) -> None:
    """Book trades straight at the gateway, as an API client would."""
    token = await api_token(stack, username)
    async with httpx.AsyncClient(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}
    ) as gateway:
        for symbol, side, quantity, price in trades:
            response = await gateway.post(
                "/api/portfolio/trades",
                json={"symbol": symbol, "side": side, "quantity": quantity, "price": price},
            )
            assert response.status_code == 201, response.text


async def booked_trades(stack, username: str) -> list[dict]:
    token = await api_token(stack, username)
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        response = await gateway.get(
            "/api/portfolio/trades",
            params={"limit": "500"},
            headers={"Authorization": f"Bearer {token}"},
        )
    return list(response.json()["trades"])


async def trade_form(live) -> dict[str, str]:
    page = await live.client.get("/services/portfolio")
    assert page.status_code == 200
    return {
        "csrf_token": CSRF_FIELD.search(page.text).group(1),
        "idempotency_key": KEY_FIELD.search(page.text).group(1),
    }


class TestHoldings:
    async def test_totals_and_positions_are_formatted_for_people(self, live, stack):
        username = stack.user("portfolio")
        await book(
            stack,
            username,
            ("BTC-USD", "buy", "1.5", "40000"),
            ("BTC-USD", "buy", "1.5", "42000"),
            ("BTC-USD", "sell", "1", "45000"),
            ("ETH-USD", "buy", "3", "2000.123456"),
        )
        await live.login(username)
        page = await live.client.get("/services/portfolio")
        assert page.status_code == 200
        text = page.text
        # Average cost 41,000; 2 BTC left at the last price 45,000: value 90,000.
        assert 'title="41000">41,000.00</span>' in text
        assert 'title="90000">90,000.00</span>' in text
        # Realised: (45,000 - 41,000) * 1 = +4,000.00, coloured as a gain.
        assert '<span class="num gain" title="4000">+4,000.00</span>' in text
        # Unrealised BTC: (45,000 - 41,000) * 2 = 8,000 on a cost of 82,000: +9.76 %.
        assert "(+9.76 %)" in text
        assert 'title="2000.123456">2,000.12</span>' in text
        assert "In USD" in text
        # Exact strings from the API never reach the page as text, only as titles.
        assert ">2000.123456<" not in text
        assert "GET /api/portfolio" not in text

    async def test_the_charts_are_svg_drawn_on_the_server(self, live, stack):
        username = stack.user("portfolio")
        await book(
            stack,
            username,
            ("SOL-USDT", "buy", "10", "100"),
            ("SOL-USDT", "sell", "4", "110"),
            ("SOL-USDT", "sell", "2", "90"),
            ("ADA-USDT", "buy", "1000", "0.5"),
        )
        await live.login(username)
        text = (await live.client.get("/services/portfolio")).text
        assert 'aria-label="Allocation of the value held in USDT"' in text
        assert 'aria-label="Realised P&amp;L in USDT over time"' in text
        # SOL: 4 left at the last price 90 = 360 of 860 held; ADA 500.
        assert "58.1 % · 500.00" in text
        assert "41.9 % · 360.00" in text
        # +40 after the first sell, then 40 - 20 = +20.
        assert "+40.00 USDT after the trade" in text
        assert "+20.00 USDT after the trade" in text
        assert "<script>" not in text
        assert " style=" not in text

    async def test_a_new_user_sees_an_empty_portfolio_and_the_form(self, live, stack):
        await live.login(stack.user("portfolio"))
        page = await live.client.get("/services/portfolio")
        assert page.status_code == 200
        assert "No trades yet" in page.text
        assert "No open positions." in page.text
        assert KEY_FIELD.search(page.text)

    async def test_each_rendering_of_the_form_has_its_own_idempotency_key(self, live, stack):
        await live.login(stack.user("portfolio"))
        first = (await trade_form(live))["idempotency_key"]
        second = (await trade_form(live))["idempotency_key"]
        assert first != second
        assert len(first) >= 20


class TestTradeForm:
    async def test_a_trade_is_booked_and_the_page_refreshed(self, live, stack):
        username = stack.user("portfolio")
        await live.login(username)
        form = await trade_form(live)
        response = await live.client.post(
            "/services/portfolio/trades",
            data={**form, "symbol": "btc/usd", "side": "buy", "quantity": "0.25", "price": "30000"},
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/services/portfolio"
        page = await live.client.get("/services/portfolio")
        assert "Bought 0.25 BTC-USD at 30,000.00 USD." in page.text
        assert 'title="7500">7,500.00</span>' in page.text
        assert [t["symbol"] for t in await booked_trades(stack, username)] == ["BTC-USD"]

    async def test_a_double_submit_books_once(self, live, stack):
        username = stack.user("portfolio")
        await live.login(username)
        form = {**(await trade_form(live)), "symbol": "ETH-USD", "side": "buy"}
        form |= {"quantity": "2", "price": "1800"}
        first = await live.client.post("/services/portfolio/trades", data=form)
        second = await live.client.post("/services/portfolio/trades", data=form)
        assert first.status_code == second.status_code == 303
        assert len(await booked_trades(stack, username)) == 1
        page = await live.client.get("/services/portfolio")
        assert "This form was already submitted: Bought 2 ETH-USD at 1,800.00 USD once" in (
            page.text
        )

    async def test_two_submits_at_the_same_moment_book_once(self, live, stack):
        username = stack.user("portfolio")
        await live.login(username)
        form = {**(await trade_form(live)), "symbol": "SOL-USD", "side": "buy"}
        form |= {"quantity": "3", "price": "150"}
        answers = await asyncio.gather(
            *(live.client.post("/services/portfolio/trades", data=form) for _ in range(4))
        )
        assert [answer.status_code for answer in answers] == [303] * 4
        assert len(await booked_trades(stack, username)) == 1

    async def test_the_apis_validation_errors_show_next_to_the_fields(self, live, stack):
        username = stack.user("portfolio")
        await live.login(username)
        form = await trade_form(live)
        response = await live.client.post(
            "/services/portfolio/trades",
            data={**form, "symbol": "BTCUSD", "side": "buy", "quantity": "-1", "price": "abc"},
        )
        assert response.status_code == 422
        text = response.text
        assert 'id="symbol-error"' in text
        assert 'id="quantity-error"' in text
        assert 'id="price-error"' in text
        assert 'id="side-error"' not in text
        assert "must be a trading pair such as BTC-USD" in text
        # What was typed stays in the form; the next submit gets a new key.
        assert 'value="BTCUSD"' in text
        assert 'value="abc"' in text
        assert KEY_FIELD.search(text).group(1) != form["idempotency_key"]
        assert await booked_trades(stack, username) == []

    async def test_selling_more_than_held_is_shown_on_the_quantity(self, live, stack):
        username = stack.user("portfolio")
        await book(stack, username, ("BTC-USD", "buy", "1", "100"))
        await live.login(username)
        form = await trade_form(live)
        response = await live.client.post(
            "/services/portfolio/trades",
            data={**form, "symbol": "BTC-USD", "side": "sell", "quantity": "2", "price": "100"},
        )
        assert response.status_code == 422
        assert "cannot sell 2 BTC-USD: the position holds 1" in response.text
        assert 'id="quantity-error"' in response.text

    async def test_a_form_without_csrf_token_is_refused(self, live, stack):
        username = stack.user("portfolio")
        await live.login(username)
        form = await trade_form(live)
        del form["csrf_token"]
        response = await live.client.post(
            "/services/portfolio/trades",
            data={**form, "symbol": "BTC-USD", "side": "buy", "quantity": "1", "price": "1"},
        )
        assert response.status_code == 403
        assert await booked_trades(stack, username) == []


class TestHistory:
    async def test_the_history_pages_with_the_apis_cursor(self, live, stack):
        username = stack.user("portfolio")
        await book(stack, username, *[("BTC-USD", "buy", str(n), "10") for n in range(1, 24)])
        await live.login(username)
        first = await live.client.get("/services/portfolio")
        assert first.text.count('data-label="Time"') == 20
        older = re.search(r'href="(/services/portfolio\?cursor=[^"]+)" rel="next"', first.text)
        assert older, "no link to older trades"
        second = await live.client.get(older.group(1).replace("&amp;", "&"))
        assert second.status_code == 200
        assert second.text.count('data-label="Time"') == 3
        assert 'rel="next"' not in second.text
        assert ">Newest trades</a>" in second.text

    async def test_the_history_filters_by_symbol(self, live, stack):
        username = stack.user("portfolio")
        await book(stack, username, ("BTC-USD", "buy", "1", "10"), ("ETH-USD", "buy", "7", "10"))
        await live.login(username)
        page = await live.client.get("/services/portfolio", params={"symbol": "ETH-USD"})
        assert page.text.count('data-label="Time"') == 1
        assert '<option value="ETH-USD" selected>' in page.text
        history = page.text.split('id="history-title"')[1]
        assert 'data-label="Symbol">ETH-USD<' in history
        assert 'data-label="Symbol">BTC-USD<' not in history

    async def test_a_bad_filter_shows_the_apis_message_in_the_history(self, live, stack):
        await live.login(stack.user("portfolio"))
        page = await live.client.get("/services/portfolio", params={"symbol": "not a pair"})
        assert page.status_code == 200
        assert "must be a trading pair" in page.text.split('id="history-title"')[1]


class TestAccess:
    async def test_a_user_without_the_portfolio_role_gets_the_gateways_refusal(self, live, stack):
        await live.login(stack.user("trading"))
        dashboard = await live.client.get("/dashboard")
        assert 'href="/services/portfolio"' not in dashboard.text
        page = await live.client.get("/services/portfolio")
        assert page.status_code == 403
        assert "Not allowed" in page.text
        assert "Book a trade" not in page.text

    async def test_a_user_without_the_portfolio_role_cannot_book(self, live, stack):
        await live.login(stack.user("trading"))
        csrf = await live.csrf("/dashboard")
        response = await live.client.post(
            "/services/portfolio/trades",
            data={
                "csrf_token": csrf,
                "idempotency_key": "web-test-key",
                "symbol": "BTC-USD",
                "side": "buy",
                "quantity": "1",
                "price": "1",
            },
        )
        assert response.status_code == 403
