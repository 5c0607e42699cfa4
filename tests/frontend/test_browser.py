"""Headless Chromium against the real processes: what a person at a browser sees."""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from devstack import REPO_ROOT
from devstack.servers import ServerProcess
from tests.frontend.stack import PASSWORD, Stack

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
# Generous waits for what the page's script does on its own; the machine is shared.
WAIT_MS = 30_000


def start_frontend(stack: Stack, gateway_url: str | None = None, **env: str) -> ServerProcess:
    """Start `services.frontend.app:app` as a process talking to the given gateway."""
    return ServerProcess(
        "services.frontend.app:app",
        env={
            "SECRETS_PROVIDER": "env",
            "SESSION_SECRET_KEY": secrets.token_urlsafe(48),
            "GATEWAY_URL": gateway_url or stack.gateway_url,
            "SECURITY__COOKIE_SECURE": "false",  # plain HTTP on loopback
            **env,
        },
        log_path=stack.log_dir / f"frontend-{secrets.token_hex(3)}.log",
    ).start()


@pytest.fixture(scope="session")
def frontend_url(stack: Stack) -> Iterator[str]:
    server = start_frontend(stack)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


def browser_problems(page: Page) -> list[str]:
    """Collect what the page's console reports as errors, from now on, into the list returned."""
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        # A CSP violation ("Refused to ...") or a script error shows up here; an HTTP
        # error status ("Failed to load resource") is what some tests expect.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    problems = browser_problems(page)
    try:
        yield page
        assert problems == [], "the browser reported errors"
    finally:
        await context.close()


async def log_in(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(base_url + "/login")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password", exact=True).fill(password)
    await page.get_by_role("button", name="Sign in").click()


async def test_a_user_logs_in_and_sees_the_dashboard(page, stack, frontend_url):
    username = stack.user("portfolio", "trading", "market", prefix="dana")
    await log_in(page, frontend_url, username)
    await expect(page).to_have_url(frontend_url + "/dashboard")
    await expect(page.get_by_role("heading", name=f"Welcome, {username}")).to_be_visible()
    # The script counts the token down (no inline script: the CSP would block it).
    await expect(page.locator("#token-countdown")).to_have_text(re.compile(r"in \d+:\d\d"))
    services = page.get_by_role("heading", name="Your services").locator("..")
    for service in ("Portfolio", "Trading", "Market"):
        await expect(services.get_by_role("link", name=re.compile(service))).to_be_visible()
    await expect(page.get_by_role("link", name="Users")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)


async def test_a_service_page_shows_the_gateways_answer(page, stack, frontend_url):
    username = stack.user("trading")
    await log_in(page, frontend_url, username)
    await page.get_by_role("navigation").get_by_role("link", name="Trading").click()
    await expect(page.get_by_role("heading", name="Trading", exact=True)).to_be_visible()
    await expect(page.get_by_text("HTTP 200")).to_be_visible()
    await expect(page.locator("main")).to_contain_text(username)


async def test_idling_past_the_timeout_lands_on_the_login_page(page, stack):
    server = start_frontend(stack, SECURITY__SESSION_TIMEOUT="4")
    try:
        await log_in(page, server.url, stack.user("trading"))
        await expect(page).to_have_url(server.url + "/dashboard")
        # Nobody touches the page; its own script finds the session gone.
        await page.wait_for_url(server.url + "/login?expired=1", timeout=WAIT_MS)
        await expect(page.get_by_text("Your session expired")).to_be_visible()
        await page.goto(server.url + "/dashboard")
        await expect(page).to_have_url(server.url + "/login")
    finally:
        server.stop()


async def test_an_expired_token_forces_a_new_login(page, stack):
    gateway = stack.gateway(GATEWAY_TOKEN_TTL_SECONDS="5")
    server = start_frontend(stack, gateway_url=gateway.url)
    try:
        username = stack.user("trading")
        await log_in(page, server.url, username)
        await expect(page).to_have_url(server.url + "/dashboard")
        await page.wait_for_url(server.url + "/login?expired=1", timeout=WAIT_MS)
        await expect(page.get_by_text("Your session expired")).to_be_visible()
        await log_in(page, server.url, username)
        await expect(page).to_have_url(server.url + "/dashboard")
    finally:
        server.stop()
        gateway.stop()


async def test_a_token_the_gateway_revoked_ends_the_session_in_the_background(page, stack):
    server = start_frontend(stack, STATUS_POLL_SECONDS="1")
    try:
        username = stack.user("trading")
        await log_in(page, server.url, username)
        await expect(page).to_have_url(server.url + "/dashboard")
        admin = stack.user("admin", prefix="admin")
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            token = (
                await gateway.post("/auth/token", json={"username": admin, "password": PASSWORD})
            ).json()["access_token"]
            revoked = await gateway.post(
                f"/admin/users/{username}/deactivate",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert revoked.status_code == 200
        await page.wait_for_url(server.url + "/login?expired=1", timeout=WAIT_MS)
    finally:
        server.stop()


async def test_a_new_account_sets_its_password_and_is_signed_in(page, stack, frontend_url):
    username = stack.user("trading", expired=True)
    await log_in(page, frontend_url, username)
    await expect(page).to_have_url(frontend_url + "/password/rotate?first=1")
    await expect(page.get_by_role("heading", name="Set your password")).to_be_visible()
    await expect(page.get_by_text("12 to 1024 characters")).to_be_visible()
    await expect(page.get_by_label("Username")).to_have_value(username)
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill("a fresh and long passphrase")
    await page.get_by_label("New password, again").fill("a fresh and long passphrase")
    await page.get_by_role("button", name="Set password and sign in").click()
    await expect(page).to_have_url(frontend_url + "/dashboard")
    await expect(page.get_by_text("Your password was changed.")).to_be_visible()


async def test_admin_pages_are_hidden_from_non_admins(page, stack, frontend_url):
    await log_in(page, frontend_url, stack.user("trading", "portfolio"))
    await expect(page).to_have_url(frontend_url + "/dashboard")
    navigation = page.get_by_role("navigation")
    await expect(navigation.get_by_role("link", name="Users")).to_have_count(0)
    await expect(navigation.get_by_role("link", name="API keys")).to_have_count(0)
    response = await page.goto(frontend_url + "/admin/users")
    assert response is not None
    assert response.status == 403
    await expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


async def test_an_admin_deactivates_a_user_after_confirming(page, stack, frontend_url):
    victim = stack.user("trading", prefix="victim")
    await log_in(page, frontend_url, stack.user("admin", prefix="admin"))
    await page.get_by_role("navigation").get_by_role("link", name="Users").click()
    row = page.get_by_role("row").filter(has_text=victim)
    await expect(row.get_by_text("active", exact=True)).to_be_visible()
    await row.get_by_role("link", name="Deactivate").click()
    await expect(page.get_by_role("heading", name=f"Deactivate {victim}?")).to_be_visible()
    await page.get_by_role("button", name=f"Yes, deactivate {victim}").click()
    await expect(page.get_by_text(f"User {victim} was deactivated.")).to_be_visible()
    await expect(row.get_by_text("inactive", exact=True)).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "admin-users.png"), full_page=True)


async def test_signing_out_returns_to_the_login_page(page, stack, frontend_url):
    await log_in(page, frontend_url, stack.user("trading"))
    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(frontend_url + "/login?logged_out=1")
    await expect(page.get_by_text("You are signed out.")).to_be_visible()
    await page.goto(frontend_url + "/dashboard")
    await expect(page).to_have_url(frontend_url + "/login")
