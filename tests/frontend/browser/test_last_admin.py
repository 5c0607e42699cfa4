"""The last-admin guard in the browser: the only active admin cannot deactivate, delete or
take the admin role from themselves, and the page says why.

It runs on a stack of its own: the session's stack holds many admins, so none is the last.
A screenshot of each refusal lands in test-artifacts/<width>/ for a person to look at.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Locator, Page, expect

from tests.frontend.browser.test_layout import WIDTHS, overflow
from tests.frontend.stack import Stack, start_stack
from tests.frontend.test_browser import ARTIFACTS, browser_problems, log_in, start_frontend

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

REFUSAL = re.compile(r"is the last active admin, and without one nobody could manage users")


@dataclass
class Lone:
    """A stack whose identity store holds one admin, and a frontend on it."""

    stack: Stack
    frontend_url: str
    admin: str


@pytest.fixture(scope="module")
def lone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lone]:
    stack = start_stack(tmp_path_factory.mktemp("lone-admin"))
    try:
        admin = stack.user("admin", prefix="admin")
        stack.user("trading", prefix="colleague")
        server = start_frontend(stack)
        try:
            yield Lone(stack, server.url, admin)
        finally:
            server.stop()
    finally:
        stack.close()


async def row_link(page: Page, lone: Lone, link: str) -> None:
    await page.goto(lone.frontend_url + "/admin/users")
    row = page.get_by_role("row").filter(has=page.get_by_role("rowheader", name=lone.admin))
    await row.get_by_role("link", name=link).click()


# Each goes as far as the last confirmation and returns its button.
async def deactivate(page: Page, lone: Lone) -> Locator:
    await row_link(page, lone, "Deactivate")
    return page.get_by_role("button", name=f"Yes, deactivate {lone.admin}")


async def delete(page: Page, lone: Lone) -> Locator:
    await row_link(page, lone, "Delete")
    return page.get_by_role("button", name=f"Yes, delete {lone.admin}")


async def strip_admin(page: Page, lone: Lone) -> Locator:
    await row_link(page, lone, "Change roles")
    await page.get_by_role("checkbox", name="admin", exact=True).uncheck()
    await page.get_by_role("checkbox", name="trading", exact=True).check()
    await page.get_by_role("button", name="Review change").click()
    await expect(
        page.get_by_role("heading", name=f"Change the roles of {lone.admin}?")
    ).to_be_visible()
    return page.get_by_role("button", name="Yes, change roles")


ACTIONS = {"deactivate": deactivate, "delete": delete, "strip-admin": strip_admin}


@pytest.mark.parametrize("width", WIDTHS)
async def test_the_last_active_admin_is_refused_with_the_reason(browser, lone, width):
    users = lone.stack.identity.list_users()
    assert [u.username for u in users if "admin" in u.roles and u.is_active] == [lone.admin]
    context = await browser.new_context(viewport={"width": width, "height": 844})
    page = await context.new_page()
    # The 409 itself is logged as "Failed to load resource"; anything else is a fault.
    problems = browser_problems(page)
    wider: dict[str, int] = {}
    try:
        await log_in(page, lone.frontend_url, lone.admin)
        await expect(page).to_have_url(lone.frontend_url + "/dashboard")
        for name, confirm in ACTIONS.items():
            button = await confirm(page, lone)
            async with page.expect_response(lambda r: r.request.method == "POST") as answer:
                await button.click()
            assert (await answer.value).status == 409, name
            await expect(page.get_by_role("heading", name="That did not work")).to_be_visible()
            alert = page.get_by_role("alert")
            await expect(alert).to_contain_text(REFUSAL)
            await expect(alert).to_contain_text(f"Refused: '{lone.admin}'")
            await expect(alert).to_contain_text("make another user admin first")
            await expect(page.get_by_text("Error code:")).to_contain_text("conflict")
            # Still signed in: the navigation and the way back to Users are there.
            await expect(page.get_by_role("link", name="Users", exact=True)).to_be_visible()
            back = page.get_by_role("link", name="Back to Users")
            await expect(back).to_have_attribute("href", "/admin/users")
            if await overflow(page) > 0:
                wider[name] = await overflow(page)
            folder = ARTIFACTS / str(width)
            folder.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(folder / f"last-admin-{name}.png"), full_page=True)
    finally:
        await context.close()
    assert wider == {}, f"pages wider than {width} px (extra pixels)"
    assert problems == [], "the browser reported errors"
    after = lone.stack.identity.get_user(lone.admin)
    assert (after.roles, after.is_active, after.deleted_at) == (["admin"], True, None)
