"""Two gateways on one Redis; one of them is cut off from it (a proxy the test controls) and
comes back. A logout made meanwhile reaches the other replica, however much API-key traffic
came with it, and a token issued meanwhile is found by a revoke-all made afterwards."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack.databases import SHARED_REDIS_URL, shared_prefix
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from tests.security.conftest import PASSWORD, Stack
from tests.support.tcp_proxy import TcpProxy

REDIS_PORT = 6379
API_KEY_USES = 300
# Bounds on waiting, far above what the work takes.
PATIENCE_SECONDS = 30.0


@pytest.fixture
def two_gateways(stack: Stack) -> Iterator[tuple[TcpProxy, str, str]]:
    """Gateway one reaches Redis through a proxy, gateway two directly; neither follows the
    change feed, so only the shared state carries revocations between them."""
    with TcpProxy(REDIS_PORT) as proxy, shared_prefix() as prefix:
        common = {
            **stack.env,
            "GATEWAY_STATE_PREFIX": prefix,
            "GATEWAY_IDENTITY_SYNC_SECONDS": "0",
            "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000",
        }
        tag = uuid.uuid4().hex[:6]
        with (
            ServerProcess(
                GATEWAY_APP,
                env={**common, "GATEWAY_STATE_URL": proxy.url()},
                log_path=stack.logs / f"gateway-cut-{tag}.log",
            ) as one,
            ServerProcess(
                GATEWAY_APP,
                env={**common, "GATEWAY_STATE_URL": SHARED_REDIS_URL},
                log_path=stack.logs / f"gateway-direct-{tag}.log",
            ) as two,
        ):
            yield proxy, one.url, two.url


def login(url: str, name: str) -> dict[str, str]:
    response = httpx.post(
        url + "/auth/token", json={"username": name, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def me(url: str, headers: dict[str, str]) -> int:
    return httpx.get(url + "/auth/me", headers=headers, timeout=PATIENCE_SECONDS).status_code


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        if httpx.get(url + "/readyz", timeout=PATIENCE_SECONDS).json()["status"] == "ready":
            return
        time.sleep(0.2)
    raise AssertionError("the gateway never found Redis again")


def test_what_a_cut_off_replica_did_reaches_the_other_when_redis_returns(
    stack: Stack, two_gateways: tuple[TcpProxy, str, str]
) -> None:
    proxy, one, two = two_gateways
    wait_ready(one)
    leaver, _ = stack.user("trading")
    offline, _ = stack.user("trading")
    bot, key = stack.user("trading", api_key=True)
    admin, _ = stack.user("admin")
    admin_headers = login(two, admin)
    leaving = login(one, leaver)
    assert me(two, leaving) == 200

    proxy.cut()
    logout = httpx.post(one + "/auth/logout", headers=leaving, timeout=PATIENCE_SECONDS)
    assert logout.status_code == 204, logout.text
    issued_offline = login(one, offline)
    with httpx.Client(base_url=one, timeout=PATIENCE_SECONDS) as client:
        for _ in range(API_KEY_USES):
            assert client.get("/auth/me", headers={"X-API-Key": str(key)}).status_code == 200
    proxy.restore()
    wait_ready(one)

    # The logout made on the cut-off replica is refused on the other one.
    assert me(two, leaving) == 401
    # A revoke-all made on the other replica finds the token issued during the outage.
    deactivated = httpx.post(
        f"{two}/admin/users/{offline}/deactivate", headers=admin_headers, timeout=30
    )
    assert deactivated.status_code == 200, deactivated.text
    assert me(one, issued_offline) == 401
    # The usage counted meanwhile arrived, summed, in the shared counters.
    usage = httpx.get(two + "/admin/api-keys/usage", headers=admin_headers, timeout=30)
    assert usage.status_code == 200, usage.text
    rows = [row for row in usage.json()["keys"] if row["username"] == bot]
    assert [row["requests"] for row in rows] == [API_KEY_USES]
