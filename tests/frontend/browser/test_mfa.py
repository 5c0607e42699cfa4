"""Second factor in Chromium against the real processes, with the default policy (admins
must use one): an admin without a factor is confined to enrolment, enrols with the QR page
(codes computed here with pyotp from the secret the page shows), then signs in with a code
and with a recovery code; the security page refuses to remove the last factor; an admin
resets another user's factors."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator

import pyotp
import pytest
from playwright.async_api import Browser, Page, expect

from devstack.ports import free_port
from devstack.servers import ServerProcess
from tests.frontend.browser.test_layout import overflow
from tests.frontend.stack import PASSWORD, Stack, start_stack
from tests.frontend.test_browser import ARTIFACTS, CHROMIUM_ARGS, log_in, start_frontend

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.postgres]

POLICY = {
    "PORTFOLIO_MFA_REQUIRED_ROLES": "admin",
    "PORTFOLIO_MFA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
}
_ = CHROMIUM_ARGS  # the browser fixture of tests/frontend/test_browser.py launches Chromium


@pytest.fixture(scope="module")
def mfa_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("mfa-stack"), **POLICY)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def mfa_frontend(mfa_stack: Stack) -> Iterator[str]:
    server = start_frontend(mfa_stack, **POLICY)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def mfa_page(browser: Browser) -> AsyncIterator[tuple[Page, list[str]]]:
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error" and not message.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield page, problems
    finally:
        await context.close()


async def shoot(page: Page, name: str) -> None:
    """Check the page fits 1366 and 390 px and save it (test-artifacts/<width>/), back at 1366."""
    wider: dict[int, int] = {}
    for width in (1366, 390):
        await page.set_viewport_size({"width": width, "height": 900})
        if await overflow(page) > 0:
            wider[width] = await overflow(page)
        folder = ARTIFACTS / str(width)
        folder.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(folder / f"mfa-{name}.png"), full_page=True)
    await page.set_viewport_size({"width": 1366, "height": 900})
    assert wider == {}, f"{name} is wider than the screen (width: extra pixels)"


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()


async def test_an_admin_enrols_then_signs_in_with_a_code_and_a_recovery_code(
    mfa_page, mfa_stack: Stack, mfa_frontend: str
):
    page, problems = mfa_page
    admin = mfa_stack.user("admin", prefix="root")

    # The password alone leads to enrolment, and nowhere else.
    await log_in(page, mfa_frontend, admin)
    await expect(page).to_have_url(mfa_frontend + "/mfa/enrol")
    await expect(page.get_by_text("nothing else is available until you do")).to_be_visible()
    await expect(page.locator("figure.qr svg")).to_be_visible()
    await shoot(page, "enrol")
    await page.goto(mfa_frontend + "/dashboard")
    await expect(page).to_have_url(re.compile(r"/login"))
    await page.goto(mfa_frontend + "/admin/users")
    await expect(page).to_have_url(re.compile(r"/login"))

    # Leaving drops the pending sign-in: the password again, and back to the enrolment,
    # where a wrong code is refused and the right one confirms.
    await log_in(page, mfa_frontend, admin)
    await expect(page).to_have_url(mfa_frontend + "/mfa/enrol")
    secret = (await page.locator("#totp-secret").text_content() or "").strip()
    totp = pyotp.TOTP(secret)
    await page.get_by_label("Then enter the 6-digit code").fill(
        f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    )
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.get_by_text("That code did not work")).to_be_visible()
    # The page showed the same pending secret again.
    secret = (await page.locator("#totp-secret").text_content() or "").strip()
    totp = pyotp.TOTP(secret)
    await page.get_by_label("Then enter the 6-digit code").fill(totp.now())
    await page.get_by_role("button", name="Confirm").click()
    await expect(page.get_by_role("heading", name="Second factor set up")).to_be_visible()
    codes = [
        (await item.text_content() or "").strip()
        for item in await page.locator("#recovery-codes code").all()
    ]
    assert len(codes) == 10
    await shoot(page, "recovery-codes")

    # Signed in now: the security page lists the factor and refuses to remove the last one.
    await page.goto(mfa_frontend + "/account/security")
    await expect(page.locator(".factor").filter(has_text="Authenticator app")).to_have_count(1)
    await page.get_by_role("button", name="Remove").click()
    await expect(page.get_by_text("last second factor")).to_be_visible()
    await shoot(page, "security")
    await sign_out(page)

    # Next sign-in: the second step, with the following step's code.
    await log_in(page, mfa_frontend, admin)
    await expect(page).to_have_url(mfa_frontend + "/login/mfa")
    await shoot(page, "second-step")
    await page.get_by_label("Code from your app").fill(totp.at(time.time() + 30))
    await page.get_by_role("button", name="Verify and sign in").click()
    await expect(page).to_have_url(mfa_frontend + "/dashboard")
    await sign_out(page)

    # And with a recovery code, once.
    await log_in(page, mfa_frontend, admin)
    await page.get_by_text("Use a recovery code instead").click()
    await page.get_by_label("Recovery code").fill(codes[0])
    await page.get_by_role("button", name="Use recovery code").click()
    await expect(page).to_have_url(mfa_frontend + "/dashboard")
    await sign_out(page)
    await log_in(page, mfa_frontend, admin)
    await page.get_by_text("Use a recovery code instead").click()
    await page.get_by_label("Recovery code").fill(codes[0])
    await page.get_by_role("button", name="Use recovery code").click()
    await expect(page.get_by_text("That code did not work")).to_be_visible()
    assert problems == []


async def test_an_admin_resets_the_second_factors_of_a_user(
    mfa_page, mfa_stack: Stack, mfa_frontend: str
):
    page, problems = mfa_page
    admin = mfa_stack.user("admin", prefix="root")
    other = mfa_stack.user("trading", prefix="trader")
    await log_in(page, mfa_frontend, admin)
    secret = (await page.locator("#totp-secret").text_content() or "").strip()
    await page.get_by_label("Then enter the 6-digit code").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Confirm").click()
    await page.goto(mfa_frontend + "/admin/users")
    row = page.get_by_role("row").filter(has_text=other)
    await row.get_by_role("link", name="Reset MFA").click()
    await page.get_by_role("button", name=re.compile(f"Yes, .* {other}")).click()
    await expect(page.get_by_text(f"User {other} was reset")).to_be_visible()
    await shoot(page, "admin-users")
    assert problems == []


@pytest.fixture(scope="module")
def passkey_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A stack whose WebAuthn origin is the frontend's: `http://localhost:<port>` (a
    passkey needs a secure context and a domain for its relying party id)."""
    port = free_port()
    origin = f"http://localhost:{port}"
    policy = {
        **POLICY,
        "PORTFOLIO_WEBAUTHN_RP_ID": "localhost",
        "PORTFOLIO_WEBAUTHN_ORIGINS": origin,
    }
    stack = start_stack(tmp_path_factory.mktemp("passkey-stack"), **policy)
    try:
        server = ServerProcess(
            "services.frontend.app:app",
            env={
                "SECRETS_PROVIDER": "env",
                "SESSION_SECRET_KEY": secrets.token_urlsafe(48),
                "GATEWAY_URL": stack.gateway_url,
                "SECURITY__COOKIE_SECURE": "false",
                **policy,
            },
            port=port,
            log_path=stack.log_dir / "frontend-passkey.log",
        ).start()
        try:
            yield stack, origin
        finally:
            server.stop()
    finally:
        stack.close()


async def test_an_admin_registers_a_passkey_then_signs_in_with_it(browser: Browser, passkey_site):
    stack, origin = passkey_site
    context = await browser.new_context(viewport={"width": 1366, "height": 900})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        # Chromium's virtual authenticator, through the DevTools protocol.
        cdp = await context.new_cdp_session(page)
        await cdp.send("WebAuthn.enable")
        added = await cdp.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                }
            },
        )
        admin = stack.user("admin", prefix="passkey")

        # No factor yet: confined to enrolment, where the passkey is set up.
        await log_in(page, origin, admin)
        await expect(page).to_have_url(origin + "/mfa/enrol")
        await page.get_by_role("button", name="Set up a passkey").click()
        await expect(page.get_by_text("Your passkey is set up.")).to_be_visible()
        await expect(page.locator("#passkey-codes code")).to_have_count(10)
        stored = await cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]}
        )
        assert len(stored["credentials"]) == 1
        await page.get_by_role("link", name="Continue").click()
        await expect(page).to_have_url(origin + "/dashboard")
        await page.goto(origin + "/account/security")
        await expect(page.locator(".factor").filter(has_text="Passkey")).to_have_count(1)
        await shoot(page, "security-passkey")
        await sign_out(page)

        # Sign in again: password, then the passkey.
        await log_in(page, origin, admin)
        await expect(page).to_have_url(origin + "/login/mfa")
        await page.get_by_role("button", name="Use a passkey").click()
        await expect(page).to_have_url(origin + "/dashboard")
        stored = await cdp.send(
            "WebAuthn.getCredentials", {"authenticatorId": added["authenticatorId"]}
        )
        assert stored["credentials"][0]["signCount"] >= 1
        assert problems == []
    finally:
        await context.close()


async def test_a_new_admin_sets_a_password_then_must_enrol_before_anything_else(
    mfa_page, mfa_stack: Stack, mfa_frontend: str
):
    page, problems = mfa_page
    newcomer = mfa_stack.user("admin", expired=True, prefix="newadmin")
    await log_in(page, mfa_frontend, newcomer)
    await expect(page).to_have_url(mfa_frontend + "/password/rotate?first=1")
    await page.get_by_label("Current password").fill(PASSWORD)
    await page.get_by_label("New password", exact=True).fill("violet harbour lantern 1987 quietly")
    await page.get_by_label("New password, again").fill("violet harbour lantern 1987 quietly")
    await page.get_by_role("button", name="Set password and sign in").click()
    # The new password checked out; the role still needs a second factor first.
    await expect(page).to_have_url(mfa_frontend + "/mfa/enrol")
    await expect(page.get_by_text("nothing else is available until you do")).to_be_visible()
    assert problems == []
