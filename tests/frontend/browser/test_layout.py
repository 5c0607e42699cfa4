"""Every page at a phone's and a laptop's width, and the portfolio page in the browser.

Each page is loaded at 390 px and 1366 px: nothing may be wider than the screen. A
screenshot of each lands in test-artifacts/<width>/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Page, expect

from shared.roles import Service
from tests.frontend.stack import PASSWORD, Stack
from tests.frontend.test_browser import ARTIFACTS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

WIDTHS = (390, 1366)
# Long enough to break a layout that does not wrap: a username, symbols, big amounts.
LONG_NAME = "maximilian-alexander-worthington-smythe"
# The longest X-Request-ID the services keep (128 characters), unbroken.
LONG_REQUEST_ID = "client-" + "0123456789abcdef" * 7 + "fedcba987"
# The audit table's event types that take more than one line.
BROKEN_TYPES = """() => [...document.querySelectorAll('td[data-label="Type"] code')]
  .filter((code) => code.getClientRects().length > 1).map((code) => code.textContent)"""
TRADES = [
    ("BTC-USD", "buy", "1.5", "61333.366666666666666667"),
    ("ETH-USD", "buy", "12.75", "3012.5"),
    ("SOL-USD", "buy", "250", "145.2"),
    ("BTC-USD", "sell", "0.5", "64000"),
    ("SOL-USD", "sell", "100", "139.87"),
    ("DOGEVERYLONGCOINNAME-USDT", "buy", "1234567.123456", "0.000123456"),
]


async def token_of(gateway: httpx.AsyncClient, username: str) -> str:
    response = await gateway.post("/auth/token", json={"username": username, "password": PASSWORD})
    return str(response.json()["access_token"])


async def trade_count(stack: Stack, username: str) -> int:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        token = await token_of(gateway, username)
        response = await gateway.get(
            "/api/portfolio/trades", headers={"Authorization": f"Bearer {token}"}
        )
    return len(response.json()["trades"])


async def furnish(stack: Stack, admin: str) -> str:
    """Give the pages something to show: trades, users with long names, a used API key."""
    victim = stack.user("trading", "portfolio", "market", prefix=LONG_NAME)
    rotation = stack.identity.rotate_api_key(victim, secrets.token_urlsafe(32))
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        headers = {"Authorization": f"Bearer {await token_of(gateway, admin)}"}
        for symbol, side, quantity, price in TRADES:
            body = {"symbol": symbol, "side": side, "quantity": quantity, "price": price}
            booked = await gateway.post("/api/portfolio/trades", json=body, headers=headers)
            assert booked.status_code == 201, booked.text
        for _ in range(3):
            used = await gateway.get("/api/trading/orders", headers={"X-API-Key": rotation.api_key})
            assert used.status_code == 200
        # An audit event carrying the longest request id a client may send.
        refused = await gateway.post(
            "/auth/token",
            json={"username": victim, "password": "not the password at all"},
            headers={"X-Request-ID": LONG_REQUEST_ID},
        )
        assert refused.status_code == 401
    return victim


async def overflow(page: Page) -> int:
    """Return by how many pixels the document is wider than the window (0: it fits)."""
    return int(
        await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
    )


async def visit(page: Page, url: str, width: int, name: str, wider: dict[str, int]) -> None:
    await page.goto(url)
    await page.wait_for_load_state("load")
    extra = await overflow(page)
    if extra > 0:
        wider[name] = extra
    folder = ARTIFACTS / str(width)
    folder.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
async def test_no_page_is_wider_than_the_screen(browser, stack, frontend_url, width):
    admin = stack.user("admin", prefix="admin")
    victim = await furnish(stack, admin)
    context = await browser.new_context(viewport={"width": width, "height": 844})
    page = await context.new_page()
    wider: dict[str, int] = {}
    try:
        await visit(page, frontend_url + "/login", width, "login", wider)
        await visit(page, frontend_url + "/password/rotate", width, "password-rotate", wider)
        await visit(page, frontend_url + "/no-such-page", width, "not-found-anonymous", wider)
        await log_in(page, frontend_url, admin)
        await expect(page).to_have_url(frontend_url + "/dashboard")
        pages = {
            "dashboard": "/dashboard",
            "portfolio": "/services/portfolio",
            **{
                f"service-{s.value}": f"/services/{s.value}"
                for s in Service
                if s.value != "portfolio"
            },
            "admin-users": "/admin/users",
            "admin-roles": f"/admin/users/{victim}/roles",
            "admin-deactivate": f"/admin/users/{victim}/deactivate",
            "admin-api-keys": "/admin/api-keys",
            "admin-user-new": "/admin/users/new",
            "admin-reset-password": f"/admin/users/{victim}/reset-password",
            "admin-rotate-api-key": f"/admin/users/{victim}/rotate-api-key",
            "admin-reactivate": f"/admin/users/{victim}/reactivate",
            "admin-delete": f"/admin/users/{victim}/delete",
            "admin-audit": "/admin/audit",
            "admin-audit-user": f"/admin/audit?user={victim}",
            "account-api-key": "/account/api-key",
            "not-found": "/no-such-page",
        }
        for name, path in pages.items():
            await visit(page, frontend_url + path, width, name, wider)
        await page.goto(frontend_url + "/admin/audit")
        if width > 760:  # a table, not stacked rows: each event type stays one readable word
            assert await page.evaluate(BROKEN_TYPES) == [], "event types broken across lines"
        await page.goto(frontend_url + f"/admin/audit?user={victim}")
        await expect(page.get_by_text(LONG_REQUEST_ID)).to_be_visible()
        await page.goto(frontend_url + "/admin/users")
        row = page.get_by_role("row").filter(has_text=victim)
        # On screen and not clipped by the table's own scroll container either.
        frame = await page.locator(".table-wrap").first.bounding_box()
        assert frame is not None
        right = min(width, frame["x"] + frame["width"])
        for action in ("Change roles", "Reset password", "Rotate API key", "Deactivate", "Delete"):
            box = await row.get_by_role("link", name=action).bounding_box()
            assert box is not None, action
            assert box["x"] >= max(0, frame["x"]), f"{action} is cut off on the left"
            assert box["x"] + box["width"] <= right, f"{action} is cut off on the right"
        # The page that shows a new API key once (a long unbroken word).
        await page.goto(frontend_url + f"/admin/users/{victim}/rotate-api-key")
        await page.get_by_role("button", name=f"Yes, rotate the api key of {victim}").click()
        await expect(page.locator("#secret-value")).to_be_visible()
        if await overflow(page) > 0:
            wider["admin-secret"] = await overflow(page)
        await page.screenshot(path=str(ARTIFACTS / str(width) / "admin-secret.png"), full_page=True)
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(frontend_url + "/login?logged_out=1")
        await log_in(page, frontend_url, stack.user("trading"))
        await visit(page, frontend_url + "/admin/users", width, "forbidden", wider)
    finally:
        await context.close()
    assert wider == {}, f"pages wider than {width} px (extra pixels)"


async def test_a_signed_in_users_404_keeps_the_navigation(page, stack, frontend_url):
    await log_in(page, frontend_url, stack.user("portfolio"))
    await expect(page).to_have_url(frontend_url + "/dashboard")
    response = await page.goto(frontend_url + "/no-such-page")
    assert response is not None
    assert response.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    navigation = page.get_by_role("navigation", name="Main")
    await expect(navigation.get_by_role("link", name="Portfolio")).to_be_visible()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


# Sent by the page itself: the same rendered form posted twice before either answer, as two
# clicks on a slow network do (Chromium coalesces two clicks on a fast one).
SUBMIT_TWICE = """async () => {
  const form = document.querySelector("form.trade-form");
  const send = () => fetch(form.action, {
    method: "POST", body: new URLSearchParams(new FormData(form)), redirect: "manual",
  });
  const answers = await Promise.all([send(), send()]);
  return answers.map((answer) => answer.type);
}"""


async def test_the_same_form_submitted_twice_books_once(page, stack, frontend_url):
    username = stack.user("portfolio")
    await log_in(page, frontend_url, username)
    await page.goto(frontend_url + "/services/portfolio")
    await page.locator("#trade-symbol").fill("ETH-USD")
    await page.get_by_label("Quantity").fill("2")
    await page.get_by_label("Price").fill("1800")
    # Both answered with the redirect to the refreshed page.
    assert await page.evaluate(SUBMIT_TWICE) == ["opaqueredirect", "opaqueredirect"]
    assert await trade_count(stack, username) == 1
    await page.goto(frontend_url + "/services/portfolio")
    await expect(page.get_by_role("status")).to_contain_text("2 ETH-USD at 1,800.00 USD")
    await expect(page.locator("svg.chart")).to_have_count(1)  # the allocation


async def test_a_trade_booked_with_the_button_refreshes_the_page(page, stack, frontend_url):
    username = stack.user("portfolio")
    await log_in(page, frontend_url, username)
    await page.goto(frontend_url + "/services/portfolio")
    await page.locator("#trade-symbol").fill("BTC-USD")
    await page.get_by_label("Quantity").fill("0.5")
    await page.get_by_label("Price").fill("30000")
    await page.get_by_role("button", name="Book trade").click()
    await expect(page).to_have_url(frontend_url + "/services/portfolio")
    await expect(page.get_by_role("status")).to_have_text("Bought 0.5 BTC-USD at 30,000.00 USD.")
    positions = page.get_by_role("heading", name="Open positions").locator("..")
    await expect(positions.get_by_role("row").filter(has_text="BTC-USD")).to_contain_text(
        "15,000.00"
    )
    assert await trade_count(stack, username) == 1


async def test_the_apis_errors_show_at_the_form(page, stack, frontend_url):
    await log_in(page, frontend_url, stack.user("portfolio"))
    await page.goto(frontend_url + "/services/portfolio")
    await page.locator("#trade-symbol").fill("BTCUSD")
    await page.get_by_label("Quantity").fill("1")
    await page.get_by_label("Price").fill("10")
    await page.get_by_role("button", name="Book trade").click()
    await expect(page.locator("#symbol-error")).to_contain_text("a trading pair such as BTC-USD")
    await expect(page.locator("#trade-symbol")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#trade-symbol")).to_have_value("BTCUSD")


async def test_times_show_in_the_browsers_time_zone(browser, stack, frontend_url):
    username = stack.user("portfolio")
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        headers = {"Authorization": f"Bearer {await token_of(gateway, username)}"}
        body = {"symbol": "BTC-USD", "side": "buy", "quantity": "1", "price": "10"}
        booked = await gateway.post("/api/portfolio/trades", json=body, headers=headers)
    executed = datetime.fromisoformat(booked.json()["trade"]["executed_at"])
    context = await browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = await context.new_page()
    try:
        await log_in(page, frontend_url, username)
        await page.goto(frontend_url + "/services/portfolio")
        shown = page.locator("#history-title ~ .table-wrap time").first
        tokyo = executed.astimezone(ZoneInfo("Asia/Tokyo"))
        await expect(shown).to_contain_text(f"{tokyo:%H:%M}")
        await expect(shown).to_have_attribute("title", re.compile(r"UTC$"))
    finally:
        await context.close()


# Every text of every chart: its size on screen, and whether it lies inside its chart (an
# SVG cuts off what lies outside its box).
CHART_TEXTS = """() => [...document.querySelectorAll("svg.chart text")].map((text) => {
  const svg = text.ownerSVGElement;
  const box = text.getBoundingClientRect();
  const frame = svg.getBoundingClientRect();
  return {
    text: text.textContent,
    px: parseFloat(getComputedStyle(text).fontSize) * svg.getScreenCTM().a,
    inside: box.left >= frame.left - 0.5 && box.right <= frame.right + 0.5
      && box.top >= frame.top - 0.5 && box.bottom <= frame.bottom + 0.5,
  };
})"""
# The smallest text a phone's reader is expected to read without zooming.
SMALLEST_PX = 11


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_charts_numbers_are_readable_and_whole(browser, stack, frontend_url, width):
    username = stack.user("portfolio")
    # Six-figure amounts on both sides of zero, and a symbol longer than a label.
    trades = [
        ("BTC-USD", "buy", "10", "61333.37"),
        ("BTC-USD", "sell", "4", "98000"),
        ("BTC-USD", "sell", "5", "12000"),
        ("DOGEVERYLONGCOINNAME-USD", "buy", "1234567.123456", "0.000123456"),
    ]
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        headers = {"Authorization": f"Bearer {await token_of(gateway, username)}"}
        for symbol, side, quantity, price in trades:
            body = {"symbol": symbol, "side": side, "quantity": quantity, "price": price}
            booked = await gateway.post("/api/portfolio/trades", json=body, headers=headers)
            assert booked.status_code == 201, booked.text
    context = await browser.new_context(viewport={"width": width, "height": 844})
    page = await context.new_page()
    try:
        await log_in(page, frontend_url, username)
        await page.goto(frontend_url + "/services/portfolio")
        await expect(page.locator("svg.chart")).to_have_count(2)
        texts = await page.evaluate(CHART_TEXTS)
        folder = ARTIFACTS / str(width)
        folder.mkdir(parents=True, exist_ok=True)
        await page.locator(".grid-2").first.screenshot(path=str(folder / "portfolio-charts.png"))
    finally:
        await context.close()
    shown = " | ".join(t["text"] for t in texts)
    # The highest and the lowest level of the realised P&L: +146,666.52, then -100,000.33.
    assert "146,666.52" in shown, shown
    assert "100,000.33" in shown, shown
    small = {t["text"]: round(t["px"], 1) for t in texts if t["px"] < SMALLEST_PX}
    assert small == {}, f"chart text smaller than {SMALLEST_PX} px at {width} px"
    cut = [t["text"] for t in texts if not t["inside"]]
    assert cut == [], f"chart text cut off at {width} px"


async def test_the_charts_dates_show_in_the_browsers_time_zone(browser, stack, frontend_url):
    username = stack.user("portfolio")
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        headers = {"Authorization": f"Bearer {await token_of(gateway, username)}"}
        for side in ("buy", "sell"):
            body = {"symbol": "BTC-USD", "side": side, "quantity": "1", "price": "10"}
            booked = await gateway.post("/api/portfolio/trades", json=body, headers=headers)
            assert booked.status_code == 201, booked.text
    executed = datetime.fromisoformat(booked.json()["trade"]["executed_at"])
    # A zone whose date differs from UTC's at that moment: UTC+14 from 10:00, UTC-11 before 11:00.
    zone = "Pacific/Kiritimati" if executed.astimezone(UTC).hour >= 10 else "Pacific/Pago_Pago"
    local = executed.astimezone(ZoneInfo(zone))
    assert local.date() != executed.astimezone(UTC).date()
    context = await browser.new_context(timezone_id=zone, locale="en-US")
    page = await context.new_page()
    try:
        await log_in(page, frontend_url, username)
        await page.goto(frontend_url + "/services/portfolio")
        label = page.locator("svg.chart text[data-datetime]")
        await expect(label).to_have_text(f"{local:%b} {local.day}, {local.year}")
    finally:
        await context.close()
