"""The rest of a user's life from a browser alone, in Chromium against the real processes.

A user makes and rotates their own API key on "My API key"; an admin resets their password
(the user's session ends, and the one-time password leads to "Set your password"), then
deactivates and reactivates them, each behind its confirmation.
"""

from __future__ import annotations

import hashlib

import httpx
import pytest
from playwright.async_api import Page, expect

from tests.frontend.browser.test_onboarding import confirm, open_page
from tests.frontend.stack import Stack
from tests.frontend.test_browser import WAIT_MS, log_in

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

NEW_PASSWORD = "amber lighthouse cobalt 2031 gently"


async def shown_once(page: Page) -> str:
    """Return the secret of a "shown this once" page, after copying it with its button."""
    await expect(page.get_by_text("Shown this once")).to_be_visible()
    secret = (await page.locator("#secret-value").text_content() or "").strip()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    return secret


async def key_status(stack: Stack, key: str) -> int:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        answer = await gateway.get("/api/trading/orders", headers={"X-API-Key": key})
    return answer.status_code


async def signed_out(page: Page, frontend_url: str) -> None:
    await page.goto(frontend_url + "/dashboard")
    await expect(page).to_have_url(frontend_url + "/login?expired=1", timeout=WAIT_MS)


async def test_own_key_reset_deactivate_and_reactivate(browser, stack: Stack, frontend_url):
    member = stack.user("trading", prefix="member")
    problems: list[str] = []
    admin_page = await open_page(browser, problems)
    user_page = await open_page(browser, problems)
    try:
        await log_in(admin_page, frontend_url, stack.user("admin", prefix="admin"))
        await expect(admin_page).to_have_url(frontend_url + "/dashboard")
        await log_in(user_page, frontend_url, member)
        await expect(user_page).to_have_url(frontend_url + "/dashboard")

        # My API key: make one (shown once), use it, see its use, rotate it.
        await user_page.get_by_role("link", name="My API key", exact=True).click()
        await expect(user_page.get_by_text("You have no API key yet.")).to_be_visible()
        await user_page.get_by_role("button", name="Make my API key").click()
        first = await shown_once(user_page)
        assert await key_status(stack, first) == 200
        await user_page.get_by_role("link", name="Back to my API key").click()
        key_id = hashlib.sha256(first.encode()).hexdigest()[:16]
        await expect(user_page.get_by_text(key_id)).to_be_visible()
        await expect(user_page.get_by_text("127.0.0.1")).to_be_visible()
        assert first not in await user_page.content()
        await user_page.get_by_role("button", name="Rotate my API key").click()
        second = await shown_once(user_page)
        assert second != first
        assert await key_status(stack, first) == 401
        assert await key_status(stack, second) == 200

        # Reset: a one-time password shown once; the member's session ends at once.
        await confirm(admin_page, frontend_url, member, "Reset password", "reset the password of")
        one_time = await shown_once(admin_page)
        await signed_out(user_page, frontend_url)
        await log_in(user_page, frontend_url, member, one_time)
        await expect(user_page).to_have_url(frontend_url + "/password/rotate?first=1")
        await expect(user_page.get_by_role("heading", name="Set your password")).to_be_visible()
        await user_page.get_by_label("Current password").fill(one_time)
        await user_page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        await user_page.get_by_label("New password, again").fill(NEW_PASSWORD)
        await user_page.get_by_role("button", name="Set password and sign in").click()
        await expect(user_page).to_have_url(frontend_url + "/dashboard")

        # Deactivate: signed out, and no sign-in; reactivate: in again, key and all.
        await confirm(admin_page, frontend_url, member, "Deactivate", "deactivate")
        await expect(admin_page.get_by_text(f"User {member} was deactivated.")).to_be_visible()
        await signed_out(user_page, frontend_url)
        await log_in(user_page, frontend_url, member, NEW_PASSWORD)
        await expect(user_page.get_by_role("alert")).to_be_visible()
        await expect(user_page).to_have_url(frontend_url + "/login")
        assert await key_status(stack, second) == 401
        await confirm(admin_page, frontend_url, member, "Reactivate", "reactivate")
        await expect(admin_page.get_by_text(f"User {member} was reactivated.")).to_be_visible()
        await log_in(user_page, frontend_url, member, NEW_PASSWORD)
        await expect(user_page).to_have_url(frontend_url + "/dashboard")
        assert await key_status(stack, second) == 200
        assert problems == [], "the browser reported errors (a CSP violation shows up here)"
    finally:
        await admin_page.context.close()
        await user_page.context.close()
