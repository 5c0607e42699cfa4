"""The operations guide, walked end to end against the real processes `make run` starts.

Provision the admin exactly as printed, log in through the gateway and the frontend, rotate
an API key from `PORTFOLIO_NEW_API_KEY` and call every service with it, read its usage, list
users with `last_login_at`, expire and rotate a password, offboard users, and take the first
admin `make run` creates through its one-time password.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import subprocess
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from shared.roles import Service
from tests.e2e.conftest import (
    API_KEY_CACHE_SECONDS,
    PASSWORD,
    PASSWORD_ROTATION_DAYS,
    Stack,
)
from tests.support.guide import (
    GUIDE_ADMIN,
    GUIDE_CREATE_USER,
    GUIDE_CREATED_LINE,
    GUIDE_PASSWORD,
    GUIDE_ROTATE_API_KEY,
    GUIDE_ROTATED_LINE,
    run_guide_block,
)

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

GUIDE_ROLES = ["admin", "portfolio", "trading"]
STUBS = [service.value for service in Service if service is not Service.PORTFOLIO]
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
NEW_PASSWORD = "a fresh and long passphrase 7"


def login(stack: Stack, username: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        stack.gateway + "/auth/token", json={"username": username, "password": password}
    )


def token_of(stack: Stack, username: str, password: str = PASSWORD) -> str:
    response = login(stack, username, password)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def csrf_token(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    match = CSRF_FIELD.search(page.text)
    assert match, f"no CSRF field on {path}"
    return match.group(1)


def frontend_login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    """Do what a browser does: load the login form, then post it with its CSRF token."""
    data = {"username": username, "password": password, "csrf_token": csrf_token(client, "/login")}
    return client.post("/login", data=data)


def backdate_password(stack: Stack, username: str, days: int) -> None:
    """Move a user's last password change `days` into the past, straight in the database.

    PORTFOLIO_PASSWORD_ROTATION_DAYS counts whole days (0 turns expiry off), so no setting
    expires a password within a test; an older `password_changed_at` exercises the real
    rule of the running service instead.
    """

    async def update() -> str:
        dsn = make_url(stack.database_url).set(drivername="postgresql")
        conn = await asyncpg.connect(dsn.render_as_string(hide_password=False))
        try:
            return str(
                await conn.execute(
                    "UPDATE user_accounts SET password_changed_at = "
                    "password_changed_at - make_interval(days => $2) WHERE username = $1",
                    username,
                    days,
                )
            )
        finally:
            await conn.close()

    assert asyncio.run(update()) == "UPDATE 1"


# Step 1: provisioning, exactly as printed.


@pytest.fixture(scope="module")
def provisioned(stack: Stack) -> subprocess.CompletedProcess[str]:
    """Run the guide's first block verbatim, as an operator would on this deployment."""
    return run_guide_block(GUIDE_CREATE_USER, stack.operator_env)


@pytest.fixture(scope="module")
def admin_token(stack: Stack, provisioned: subprocess.CompletedProcess[str]) -> str:
    assert provisioned.returncode == 0, provisioned.stderr
    return token_of(stack, GUIDE_ADMIN, GUIDE_PASSWORD)


def test_guide_block_provisions_the_security_admin_as_printed(stack, provisioned):
    assert provisioned.returncode == 0, provisioned.stderr
    assert provisioned.stdout == GUIDE_CREATED_LINE
    user = stack.identity.get_user(GUIDE_ADMIN)
    assert (user.roles, user.is_active) == (GUIDE_ROLES, True)


# Step 2: logins.


def test_security_admin_logs_in_through_the_gateway(stack, admin_token):
    me = httpx.get(stack.gateway + "/auth/me", headers=bearer(admin_token))
    assert me.status_code == 200
    assert me.json()["username"] == GUIDE_ADMIN
    assert me.json()["roles"] == GUIDE_ROLES
    assert sorted(me.json()["services"]) == sorted(service.value for service in Service)
    assert me.json()["auth_method"] == "password"


def test_security_admin_logs_in_through_the_frontend(stack, provisioned):
    with httpx.Client(base_url=stack.frontend) as browser:
        signed_in = frontend_login(browser, GUIDE_ADMIN, GUIDE_PASSWORD)
        assert signed_in.status_code == 303, signed_in.text
        assert signed_in.headers["location"] == "/dashboard"
        dashboard = browser.get("/dashboard")
        users_page = browser.get("/admin/users")
    assert dashboard.status_code == 200
    assert f"Welcome, {GUIDE_ADMIN}" in dashboard.text
    for service in Service:
        assert f'href="/services/{service.value}"' in dashboard.text
    assert users_page.status_code == 200
    assert GUIDE_ADMIN in users_page.text


def test_wrong_password_is_refused_at_both_doors(stack, provisioned):
    assert error_code(login(stack, GUIDE_ADMIN, "not the guide password")) == (
        "invalid_credentials"
    )
    with httpx.Client(base_url=stack.frontend) as browser:
        refused = frontend_login(browser, GUIDE_ADMIN, "not the guide password")
        still_out = browser.get("/dashboard")
    assert refused.status_code == 401
    assert (still_out.status_code, still_out.headers["location"]) == (303, "/login")
    assert "Wrong username or password." in refused.text


# Step 3: the API key from PORTFOLIO_NEW_API_KEY, and every service called with it.


@dataclass(frozen=True)
class KeyWalk:
    """The guide's rotation, the key it exported, and what each service answered to it."""

    rotation_stdout: str
    api_key: str
    echoes: dict[str, httpx.Response]
    trade: httpx.Response
    position: httpx.Response
    summary: httpx.Response
    sent: Counter[str]


@pytest.fixture(scope="module")
def key_walk(
    stack: Stack,
    provisioned: subprocess.CompletedProcess[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> KeyWalk:
    assert provisioned.returncode == 0, provisioned.stderr
    key_file = tmp_path_factory.mktemp("guide-key") / "key"
    # The block runs verbatim; one line after it, in the same shell, reads back the key
    # it exported, as an operator would store it in the vault.
    capture = f'\nprintf "%s" "$PORTFOLIO_NEW_API_KEY" > "{key_file}"\n'
    rotated = run_guide_block(GUIDE_ROTATE_API_KEY + capture, stack.operator_env)
    assert rotated.returncode == 0, rotated.stderr
    api_key = key_file.read_text()
    sent: Counter[str] = Counter()
    headers = {"X-API-Key": api_key}
    with httpx.Client(base_url=stack.gateway + "/api", headers=headers) as client:
        echoes = {}
        for service in STUBS:
            echoes[service] = client.get(
                f"/{service}/guide/{service}", headers={"X-Request-ID": f"e2e-{service}"}
            )
            sent[service] += 1
        order = {"symbol": "BTC-USD", "side": "buy", "quantity": "0.5", "price": "64000.10"}
        trade = client.post("/portfolio/trades", json=order, headers={"Idempotency-Key": "e2e-1"})
        position = client.get("/portfolio/positions/BTC-USD")
        summary = client.get("/portfolio/summary")
        sent["portfolio"] += 3
    return KeyWalk(rotated.stdout, api_key, echoes, trade, position, summary, sent)


def test_guide_block_rotates_the_key_it_exported(stack, key_walk):
    assert key_walk.rotation_stdout == GUIDE_ROTATED_LINE
    assert re.fullmatch(r"[0-9a-f]{64}", key_walk.api_key)  # openssl rand -hex 32
    assert stack.identity.verify_api_key(key_walk.api_key).username == GUIDE_ADMIN
    key_hash = hashlib.sha256(key_walk.api_key.encode()).hexdigest()
    assert stack.identity.get_user(GUIDE_ADMIN).api_key_id == key_hash[:16]


@pytest.mark.parametrize("service", STUBS)
def test_rotated_key_reaches_each_stub_as_the_security_admin(key_walk, service):
    response = key_walk.echoes[service]
    assert response.status_code == 200, response.text
    assert response.json() == {
        "service": service,
        "method": "GET",
        "path": f"/guide/{service}",
        "user": GUIDE_ADMIN,
        "roles": GUIDE_ROLES,
        "request_id": f"e2e-{service}",
    }


def test_rotated_key_books_a_trade_and_reads_it_back_from_the_portfolio_api(key_walk):
    assert key_walk.trade.status_code == 201, key_walk.trade.text
    assert key_walk.trade.json()["trade"]["value"] == "32000.05"
    assert key_walk.position.status_code == 200
    assert key_walk.position.json()["position"]["quantity"] == "0.5"
    assert key_walk.position.json()["position"]["average_cost"] == "64000.1"
    assert key_walk.summary.status_code == 200
    assert key_walk.summary.json()["totals"][0]["cost_basis"] == "32000.05"


# Step 4: usage.


def test_usage_counts_what_the_key_sent_to_each_service(stack, key_walk, admin_token):
    response = httpx.get(stack.gateway + "/admin/api-keys/usage", headers=bearer(admin_token))
    assert response.status_code == 200
    key_id = hashlib.sha256(key_walk.api_key.encode()).hexdigest()[:16]
    (usage,) = [entry for entry in response.json()["keys"] if entry["key_id"] == key_id]
    total = sum(key_walk.sent.values())
    assert usage["username"] == GUIDE_ADMIN
    assert usage["services"] == dict(key_walk.sent)
    assert usage["requests"] == total
    assert usage["status_classes"] == {"2xx": total}
    assert key_walk.api_key not in response.text


def test_access_log_has_every_keyed_request_and_never_the_key(stack, key_walk):
    key_id = hashlib.sha256(key_walk.api_key.encode()).hexdigest()[:16]
    text = _read_when_flushed(stack.access_log, key_id, sum(key_walk.sent.values()))
    assert key_walk.api_key not in text


def _read_when_flushed(path: Path, key_id: str, count: int) -> str:
    # The gateway writes its access log from a thread in batches: wait for the lines.
    deadline = time.monotonic() + 10
    while True:
        text = path.read_text() if path.exists() else ""
        if text.count(f'"key_id":"{key_id}"') >= count or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert text.count(f'"key_id":"{key_id}"') == count, text[-2000:]
    return text


# Step 5: users and last_login_at.


def test_users_list_shows_last_login_after_the_logins(stack, admin_token):
    newcomer = stack.user("market", prefix="newcomer")
    snapshot = {user.username: user for user in stack.identity.list_users()}
    assert snapshot[GUIDE_ADMIN].last_login_at is not None
    assert snapshot[GUIDE_ADMIN].last_login_at <= datetime.now(UTC)
    assert snapshot[newcomer].last_login_at is None

    response = httpx.get(stack.gateway + "/admin/users", headers=bearer(admin_token))
    assert response.status_code == 200
    listed = {user["username"]: user for user in response.json()["users"]}
    assert set(listed) == set(snapshot)
    last_login = datetime.fromisoformat(listed[GUIDE_ADMIN]["last_login_at"])
    assert last_login == snapshot[GUIDE_ADMIN].last_login_at
    assert listed[newcomer]["last_login_at"] is None
    assert all(
        "password_hash" not in user and "api_key_hash" not in user for user in listed.values()
    )


def test_users_list_needs_the_admin_role(stack):
    trader = stack.user("trading")
    response = httpx.get(stack.gateway + "/admin/users", headers=bearer(token_of(stack, trader)))
    assert response.status_code == 403
    assert error_code(response) == "forbidden"


# Step 6: an expired password.


def test_expired_password_is_refused_until_rotated(stack):
    name = stack.user("portfolio")
    old_token = token_of(stack, name)
    backdate_password(stack, name, PASSWORD_ROTATION_DAYS + 1)

    expired = login(stack, name)
    assert expired.status_code == 403
    assert error_code(expired) == "password_expired"
    assert expired.json()["error"]["rotate_url"] == "/auth/password/rotate"

    rotated = httpx.post(
        stack.gateway + "/auth/password/rotate",
        json={"username": name, "current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert rotated.status_code == 200, rotated.text
    assert login(stack, name).status_code == 401
    fresh = login(stack, name, NEW_PASSWORD)
    assert fresh.status_code == 200
    positions = httpx.get(
        stack.gateway + "/api/portfolio/positions", headers=bearer(fresh.json()["access_token"])
    )
    assert positions.json() == {"positions": []}
    # Rotation revokes the tokens issued before it.
    stale = httpx.get(stack.gateway + "/auth/me", headers=bearer(old_token))
    assert stale.status_code == 401
    user = stack.identity.get_user(name)
    assert user.password_expires_at is not None
    assert user.password_expires_at > datetime.now(UTC)


def test_expired_password_sends_the_frontend_to_the_rotation_form(stack):
    name = stack.user("trading")
    backdate_password(stack, name, PASSWORD_ROTATION_DAYS + 1)
    with httpx.Client(base_url=stack.frontend) as browser:
        response = frontend_login(browser, name, PASSWORD)
    assert response.status_code == 303
    assert response.headers["location"] == "/password/rotate"


# Step 7: offboarding.


@dataclass(frozen=True)
class Leaver:
    name: str
    token: str
    api_key: str


@pytest.fixture
def leaver(stack: Stack) -> Leaver:
    """A trading user with a live token and an API key the gateway has just cached."""
    name = stack.user("trading", prefix="leaver")
    api_key = stack.identity.rotate_api_key(name, secrets.token_hex(32)).api_key
    leaver = Leaver(name, token_of(stack, name), api_key)
    assert call_trading(stack, bearer(leaver.token)).status_code == 200
    assert call_trading(stack, {"X-API-Key": leaver.api_key}).status_code == 200
    return leaver


def call_trading(stack: Stack, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(stack.gateway + "/api/trading/orders", headers=headers)


def assert_token_refused(stack: Stack, leaver: Leaver) -> None:
    by_token = call_trading(stack, bearer(leaver.token))
    assert by_token.status_code == 401, by_token.text
    assert error_code(by_token) == "invalid_token"


def assert_key_and_password_refused(stack: Stack, leaver: Leaver) -> None:
    by_key = call_trading(stack, {"X-API-Key": leaver.api_key})
    # Like an unknown key: "inactive" would confirm to a key's finder that it is real.
    assert by_key.status_code == 401, by_key.text
    assert error_code(by_key) == "invalid_credentials"
    by_password = login(stack, leaver.name)
    assert by_password.status_code == 403
    assert error_code(by_password) == "account_inactive"


def deactivate_at_gateway(stack: Stack, admin_token: str, username: str) -> httpx.Response:
    return httpx.post(
        stack.gateway + f"/admin/users/{username}/deactivate", headers=bearer(admin_token)
    )


def test_offboarding_through_the_gateway_refuses_token_and_key_at_once(stack, admin_token, leaver):
    response = deactivate_at_gateway(stack, admin_token, leaver.name)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["is_active"] is False
    # No wait: the gateway revoked the tokens and dropped the cached key itself.
    assert_token_refused(stack, leaver)
    assert_key_and_password_refused(stack, leaver)


def test_offboarding_through_the_identity_service_refuses_key_within_the_cache_time(stack, leaver):
    assert stack.identity.deactivate_user(leaver.name).is_active is False
    assert login(stack, leaver.name).status_code == 403
    # The gateway still holds the key's verification until GATEWAY_API_KEY_CACHE_SECONDS
    # after it cached it; by then the identity service answers for it again.
    time.sleep(API_KEY_CACHE_SECONDS + 0.5)
    assert_key_and_password_refused(stack, leaver)


def test_offboarding_through_the_identity_service_ends_a_live_token_within_the_cache_time(
    stack, leaver
):
    stack.identity.deactivate_user(leaver.name)
    # The gateway's identity sync (GATEWAY_IDENTITY_SYNC_SECONDS) reads the deactivation
    # from the identity service's change feed and refuses the token issued before it.
    time.sleep(API_KEY_CACHE_SECONDS + 0.5)
    assert_token_refused(stack, leaver)
    assert_key_and_password_refused(stack, leaver)


def test_deactivating_again_at_the_gateway_revokes_what_the_identity_service_left_live(
    stack, admin_token, leaver
):
    stack.identity.deactivate_user(leaver.name)
    response = deactivate_at_gateway(stack, admin_token, leaver.name)
    assert response.status_code == 200, response.text
    assert_token_refused(stack, leaver)
    assert_key_and_password_refused(stack, leaver)


# Step 8: the first admin `make run` creates.


def test_first_admin_from_make_run_rotates_its_one_time_password_then_gets_in(stack):
    (one_time,) = stack.one_time_passwords()
    assert one_time not in stack.runner.output.replace(one_time, "", 1)

    first = login(stack, "admin", one_time)
    assert first.status_code == 403
    assert error_code(first) == "password_expired"

    with httpx.Client(base_url=stack.frontend) as browser:
        sent_to_rotate = frontend_login(browser, "admin", one_time)
        assert sent_to_rotate.status_code == 303
        # A one-time password: the page says "Set your password", not "expired".
        assert sent_to_rotate.headers["location"] == "/password/rotate?first=1"
        assert "Set your password" in browser.get("/password/rotate?first=1").text
        form = {
            "username": "admin",
            "current_password": one_time,
            "new_password": NEW_PASSWORD,
            "new_password_confirm": NEW_PASSWORD,
            "csrf_token": csrf_token(browser, "/password/rotate"),
        }
        rotated = browser.post("/password/rotate", data=form)
        assert rotated.status_code == 303, rotated.text
        assert rotated.headers["location"] == "/dashboard"
        dashboard = browser.get("/dashboard")
    assert dashboard.status_code == 200
    assert "Welcome, admin" in dashboard.text
    assert "Your password was changed." in dashboard.text

    assert login(stack, "admin", one_time).status_code == 401
    again = login(stack, "admin", NEW_PASSWORD)
    assert again.status_code == 200
    assert again.json()["roles"] == ["admin"]
