"""A login that checked the old credentials just before a rotation, a deactivation or a role
change committed gets its token after the change: that token must not outlive it, whether
the change went through this gateway or straight into the identity store (change feed).

The race is made deterministic by a proxy between the gateway and the identity service that
holds back the answer to the racing login until the change has been made.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
import pytest

from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from tests.security.conftest import PASSWORD, Stack
from tests.support.holding_proxy import HoldingProxy

NEW_PASSWORD = "a brand new attack-suite passphrase"
SYNC_SECONDS = "0.3"
# Bounds on waiting, far above what the work takes; never speed assertions.
PATIENCE_SECONDS = 30.0
CHANGES = ["rotation", "deactivation", "role change"]


def login(url: str, username: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(
        url + "/auth/token",
        json={"username": username, "password": password},
        timeout=PATIENCE_SECONDS,
    )


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def me(url: str, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(url + "/auth/me", headers=headers, timeout=PATIENCE_SECONDS)


def eventually_refused(url: str, headers: dict[str, str]) -> httpx.Response:
    deadline = time.monotonic() + PATIENCE_SECONDS
    response = me(url, headers)
    while response.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = me(url, headers)
    return response


def racing_login(
    proxy: HoldingProxy, gateway_url: str, name: str, change: Callable[[], None]
) -> httpx.Response:
    """Log in; while the identity service's answer (the password checked out) is held
    back, make `change`; then let the answer through and return the login's response."""
    hold = proxy.hold(b"POST /internal/identity/authenticate", name.encode())
    with ThreadPoolExecutor(1) as pool:
        racing = pool.submit(login, gateway_url, name)
        assert hold.answered.wait(PATIENCE_SECONDS), "the racing login never reached the store"
        change()
        hold.release()
        return racing.result(PATIENCE_SECONDS)


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_token"


@pytest.fixture
def proxy(stack: Stack) -> Iterator[HoldingProxy]:
    with HoldingProxy(urlsplit(stack.portfolio_url).port or 80) as running:
        yield running


@contextmanager
def gateway_behind(stack: Stack, proxy: HoldingProxy, sync_seconds: str) -> Iterator[str]:
    """Run a gateway reaching the identity service through `proxy`; yield its URL."""
    name = f"gateway-{uuid.uuid4().hex[:6]}"
    env = {
        **stack.env,
        "PORTFOLIO_SERVICE_URL": proxy.url,
        "GATEWAY_IDENTITY_SYNC_SECONDS": sync_seconds,
        "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000",
    }
    with ServerProcess(GATEWAY_APP, env=env, log_path=stack.logs / f"{name}.log") as gateway:
        yield gateway.url


@pytest.mark.parametrize("kind", CHANGES)
def test_a_login_racing_a_change_made_through_this_gateway_is_refused_at_once(
    stack: Stack, proxy: HoldingProxy, kind: str
) -> None:
    # No change feed: only what the gateway notes of its own changes can refuse the token.
    with gateway_behind(stack, proxy, sync_seconds="0") as gateway:
        run_through_the_gateway(stack, proxy, gateway, kind)


def run_through_the_gateway(stack: Stack, proxy: HoldingProxy, gateway: str, kind: str) -> None:
    admin, _ = stack.user("admin")
    admin_headers = bearer(login(gateway, admin))
    name, _ = stack.user("trading")

    def change() -> None:
        with httpx.Client(base_url=gateway, timeout=PATIENCE_SECONDS) as client:
            if kind == "rotation":
                response = client.post(
                    "/auth/password/rotate",
                    json={
                        "username": name,
                        "current_password": PASSWORD,
                        "new_password": NEW_PASSWORD,
                    },
                )
            elif kind == "deactivation":
                response = client.post(f"/admin/users/{name}/deactivate", headers=admin_headers)
            else:
                response = client.put(
                    f"/admin/users/{name}/roles", json={"roles": ["market"]}, headers=admin_headers
                )
        assert response.status_code == 200, response.text

    raced = racing_login(proxy, gateway, name, change)
    # The password did check out before the change: the login itself succeeded.
    assert_refused(me(gateway, bearer(raced)))
    after = login(gateway, name, NEW_PASSWORD if kind == "rotation" else PASSWORD)
    if kind == "deactivation":
        assert after.status_code == 403
    else:
        assert me(gateway, bearer(after)).status_code == 200


@pytest.mark.parametrize("kind", CHANGES)
def test_a_login_racing_a_change_made_in_the_identity_store_is_refused_after_the_sync(
    stack: Stack, proxy: HoldingProxy, kind: str
) -> None:
    with gateway_behind(stack, proxy, sync_seconds=SYNC_SECONDS) as gateway:
        run_in_the_store(stack, proxy, gateway, kind)


def run_in_the_store(stack: Stack, proxy: HoldingProxy, gateway: str, kind: str) -> None:
    name, _ = stack.user("trading")
    before = bearer(login(gateway, name))

    def change() -> None:
        # Straight into the store, as the operations guide does: the gateway learns of it
        # only through the change feed, within the same second as the racing login.
        if kind == "rotation":
            stack.identity.rotate_password(name, PASSWORD, NEW_PASSWORD)
        elif kind == "deactivation":
            stack.identity.deactivate_user(name)
        else:
            stack.identity.set_roles(name, ["market"])

    raced = bearer(racing_login(proxy, gateway, name, change))
    assert_refused(eventually_refused(gateway, before))
    # The feed has been applied: the racing login's token is refused with no grace.
    assert_refused(me(gateway, raced))
    if kind != "deactivation":
        after = login(gateway, name, NEW_PASSWORD if kind == "rotation" else PASSWORD)
        assert me(gateway, bearer(after)).status_code == 200


def test_an_api_key_invalidated_while_it_is_verified_is_not_cached(
    stack: Stack, proxy: HoldingProxy
) -> None:
    # The key checks out at the identity service; before the gateway caches that answer,
    # the user is deactivated through the same gateway. The invalidation must win: the
    # next request asks again and is refused, instead of riding the cache for its TTL.
    with gateway_behind(stack, proxy, sync_seconds="0") as gateway:
        admin, _ = stack.user("admin")
        admin_headers = bearer(login(gateway, admin))
        name, key = stack.user("trading", api_key=True)
        assert key is not None
        hold = proxy.hold(b"POST /internal/identity/api-keys/verify")
        with ThreadPoolExecutor(1) as pool:
            racing = pool.submit(me, gateway, {"X-API-Key": key})
            assert hold.answered.wait(PATIENCE_SECONDS), "the key never reached the store"
            deactivated = httpx.post(
                f"{gateway}/admin/users/{name}/deactivate",
                headers=admin_headers,
                timeout=PATIENCE_SECONDS,
            )
            assert deactivated.status_code == 200, deactivated.text
            hold.release()
            # Verified before the deactivation: this one request may pass.
            assert racing.result(PATIENCE_SECONDS).status_code == 200
        after = me(gateway, {"X-API-Key": key})
        assert after.status_code == 401, after.text
