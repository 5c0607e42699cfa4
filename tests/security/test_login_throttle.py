"""Password guessing: limited per account and per address, a victim never locked out for
good, and a forged X-Forwarded-For moves nothing unless it comes from a trusted proxy."""

import time
import uuid

import httpx
from pydantic import SecretStr

from services.frontend.app import create_app
from services.frontend.config import FrontendSecrets, SecuritySettings, Settings
from services.frontend.sessions import MemorySessionStore
from tests.frontend.conftest import CSRF_FIELD
from tests.security.conftest import PASSWORD

WRONG = "not the password, just a guess"


def login(url: str, username: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(
        url + "/auth/token", json={"username": username, "password": password}, headers=headers
    )


def test_guessing_one_account_is_stopped_and_even_the_right_password_waits(stack):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS="3")
    name, _ = stack.user("trading")
    statuses = [login(gateway.url, name, WRONG).status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    for password in (WRONG, PASSWORD):
        refused = login(gateway.url, name, password)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_attempts"
        assert int(refused.headers["Retry-After"]) >= 1


def test_a_victims_account_opens_again_once_the_window_passes(stack):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS="2", GATEWAY_LOGIN_WINDOW_SECONDS="1.5")
    name, _ = stack.user("trading")
    for _ in range(4):
        login(gateway.url, name, WRONG)
    assert login(gateway.url, name, PASSWORD).status_code == 429
    time.sleep(1.6)
    assert login(gateway.url, name, PASSWORD).status_code == 200


def test_guessing_across_many_accounts_from_one_address_is_stopped(stack):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="4")
    for _ in range(4):
        assert login(gateway.url, f"nobody-{uuid.uuid4().hex[:8]}", WRONG).status_code == 401
    name, _ = stack.user("trading")
    assert login(gateway.url, name, PASSWORD).status_code == 429


def test_a_forged_forwarded_for_from_an_untrusted_peer_does_not_move_the_throttle(stack):
    # No trusted proxy: uvicorn's own proxy-headers handling would believe a loopback peer.
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="3")
    for n in range(3):
        forged = {"X-Forwarded-For": f"198.51.100.{n + 1}", "X-Real-IP": f"198.51.100.{n + 1}"}
        assert (
            login(gateway.url, f"nobody-{n}-{uuid.uuid4().hex[:6]}", WRONG, **forged).status_code
            == 401
        )
    fresh = {"X-Forwarded-For": "203.0.113.77", "Forwarded": "for=203.0.113.77"}
    assert login(gateway.url, f"nobody-{uuid.uuid4().hex[:6]}", WRONG, **fresh).status_code == 429


def test_a_trusted_proxy_gets_a_throttle_per_forwarded_address(stack):
    gateway = stack.gateway(
        GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="3", GATEWAY_TRUSTED_PROXIES="127.0.0.1/32"
    )
    for n in range(3):
        failed = login(
            gateway.url,
            f"nobody-{n}-{uuid.uuid4().hex[:6]}",
            WRONG,
            **{"X-Forwarded-For": "198.51.100.1"},
        )
        assert failed.status_code == 401
    name, _ = stack.user("trading")
    blocked = login(gateway.url, name, PASSWORD, **{"X-Forwarded-For": "198.51.100.1"})
    assert blocked.status_code == 429
    assert (
        login(gateway.url, name, PASSWORD, **{"X-Forwarded-For": "198.51.100.2"}).status_code == 200
    )


async def browser_login(app, address: str, username: str, password: str) -> int:
    transport = httpx.ASGITransport(app=app, client=(address, 50123))
    async with httpx.AsyncClient(transport=transport, base_url="http://frontend.test") as browser:
        page = await browser.get("/login")
        csrf = CSRF_FIELD.search(page.text)
        assert csrf is not None
        data = {"username": username, "password": password, "csrf_token": csrf.group(1)}
        return (await browser.post("/login", data=data)).status_code


async def test_browsers_behind_the_frontend_are_throttled_each_on_their_own_address(stack):
    gateway = stack.gateway(
        GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="3", GATEWAY_TRUSTED_PROXIES="127.0.0.1/32"
    )
    settings = Settings(gateway_url=gateway.url, security=SecuritySettings(cookie_secure=False))
    app = create_app(
        settings,
        FrontendSecrets(SecretStr("s" * 40)),
        session_store=MemorySessionStore(idle_timeout=600, lifetime=3600),
    )
    async with app.router.lifespan_context(app):
        for n in range(3):
            assert await browser_login(app, "192.0.2.10", f"nobody-{n}", WRONG) == 401
        assert (
            await browser_login(app, "192.0.2.10", f"nobody-{uuid.uuid4().hex[:6]}", WRONG) == 429
        )
        name, _ = stack.user("trading")
        # Another browser is not punished for the first one's guesses.
        assert await browser_login(app, "192.0.2.20", name, PASSWORD) == 303
