"""Onboarding and offboarding from a browser alone, in Chromium against the real processes.

An admin creates a user and gives them an API key; the user signs in with the one-time
password and sets their own; the admin reads the audit trail, then deletes the user, who
can then neither sign in nor use the key.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.async_api import Browser, Page, expect

from tests.frontend.stack import Stack
from tests.frontend.test_browser import WAIT_MS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

NEW_PASSWORD = "violet harbour lantern 1987 quietly"


async def open_page(browser: Browser, problems: list[str]) -> Page:
    """Open a page whose script errors and CSP violations land in `problems`."""
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = await context.new_page()
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    return page


async def confirm(page: Page, base_url: str, username: str, link: str, button: str) -> None:
    """Click an action in the user's row of the users page, then confirm it."""
    await page.goto(base_url + "/admin/users")
    await page.get_by_role("row").filter(has_text=username).get_by_role("link", name=link).click()
    await page.get_by_role("button", name=f"Yes, {button} {username}").click()


async def test_an_admin_onboards_audits_and_offboards_a_user(browser, stack: Stack, frontend_url):
    newcomer = f"newcomer-{uuid.uuid4().hex[:6]}"
    problems: list[str] = []
    admin_page = await open_page(browser, problems)
    user_page = await open_page(browser, problems)
    try:
        # Onboard: create the user with a one-time password, shown once with a copy button.
        await log_in(admin_page, frontend_url, stack.user("admin", prefix="admin"))
        await expect(admin_page).to_have_url(frontend_url + "/dashboard")
        await admin_page.get_by_role("link", name="Users", exact=True).click()
        await admin_page.get_by_role("link", name="Create a user").click()
        await admin_page.get_by_label("Username").fill(newcomer)
        await admin_page.get_by_label("trading").check()
        await admin_page.get_by_role("button", name="Create user").click()
        await expect(
            admin_page.get_by_role("heading", name=f"User {newcomer} was created")
        ).to_be_visible()
        one_time = (await admin_page.locator("#secret-value").text_content() or "").strip()
        assert len(one_time) >= 12
        await admin_page.get_by_role("button", name="Copy").click()
        await expect(admin_page.get_by_role("button", name="Copied")).to_be_visible()
        assert await admin_page.evaluate("navigator.clipboard.readText()") == one_time

        # ... and an API key, shown once.
        await confirm(admin_page, frontend_url, newcomer, "Rotate API key", "rotate the api key of")
        await expect(admin_page.get_by_text("Shown this once")).to_be_visible()
        api_key = (await admin_page.locator("#secret-value").text_content() or "").strip()
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            used = await gateway.get("/api/trading/orders", headers={"X-API-Key": api_key})
            assert used.status_code == 200

        # The newcomer signs in with the one-time password and is asked to set their own.
        await log_in(user_page, frontend_url, newcomer, one_time)
        await expect(user_page).to_have_url(frontend_url + "/password/rotate?first=1")
        await expect(user_page.get_by_role("heading", name="Set your password")).to_be_visible()
        await expect(user_page.get_by_text("12 to 1024 characters")).to_be_visible()
        await user_page.get_by_label("Current password").fill(one_time)
        await user_page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        await user_page.get_by_label("New password, again").fill(NEW_PASSWORD)
        await user_page.get_by_role("button", name="Set password and sign in").click()
        await expect(user_page).to_have_url(frontend_url + "/dashboard")

        # Their own key page shows the key id and its use, never the key.
        await user_page.get_by_role("link", name="My API key", exact=True).click()
        await expect(user_page.get_by_role("heading", name="My API key")).to_be_visible()
        key_id = stack.identity.get_user(newcomer).api_key_id
        assert key_id
        await expect(user_page.get_by_text(key_id)).to_be_visible()
        assert api_key not in await user_page.content()

        # Audit: everything that happened to the newcomer, by whom.
        await admin_page.get_by_role("link", name="Audit", exact=True).click()
        await admin_page.get_by_label("User").fill(newcomer)
        await admin_page.get_by_role("button", name="Filter").click()
        table = admin_page.locator("table.table-stack")
        for event in ("user.created", "api_key.rotated", "password.rotated", "login.succeeded"):
            await expect(table.get_by_text(event, exact=True).first).to_be_visible()
        await admin_page.get_by_label("Type").select_option("user.created")
        await admin_page.get_by_role("button", name="Filter").click()
        await expect(table.locator("tbody tr")).to_have_count(1)

        # Offboard: delete, behind a confirmation.
        await confirm(admin_page, frontend_url, newcomer, "Delete", "delete")
        await expect(admin_page.get_by_text(f"User {newcomer} was deleted.")).to_be_visible()

        # The deleted user is signed out everywhere and can sign in no more.
        await user_page.goto(frontend_url + "/dashboard")
        await expect(user_page).to_have_url(frontend_url + "/login?expired=1", timeout=WAIT_MS)
        await log_in(user_page, frontend_url, newcomer, NEW_PASSWORD)
        await expect(user_page.get_by_role("alert")).to_be_visible()
        await expect(user_page).to_have_url(frontend_url + "/login")
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            refused = await gateway.get("/api/trading/orders", headers={"X-API-Key": api_key})
            assert refused.status_code == 401
        assert problems == [], "the browser reported errors (a CSP violation shows up here)"
    finally:
        await admin_page.context.close()
        await user_page.context.close()
