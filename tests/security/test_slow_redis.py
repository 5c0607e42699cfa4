"""A slow Redis (0.45 s each way, behind a proxy the test controls) costs a request at most
the state budget once; then the gateway serves from memory, says so once in its log and as
`degraded` in `/readyz`, and goes back to Redis when it answers promptly again."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack.databases import shared_prefix
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from tests.security.conftest import PASSWORD, Stack
from tests.support.tcp_proxy import TcpProxy

REDIS_PORT = 6379
DELAY_SECONDS = 0.45  # each way: one Redis call takes 0.9 s
BUDGET_SECONDS = "0.2"
# Bounds on waiting, far above what the work takes.
PATIENCE_SECONDS = 30.0


@pytest.fixture
def slow_redis() -> Iterator[TcpProxy]:
    with TcpProxy(REDIS_PORT) as proxy:
        yield proxy


def readiness(url: str) -> dict[str, object]:
    response = httpx.get(url + "/readyz", timeout=PATIENCE_SECONDS)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def eventually_status(url: str, status: str) -> dict[str, object]:
    deadline = time.monotonic() + PATIENCE_SECONDS
    body = readiness(url)
    while body["status"] != status and time.monotonic() < deadline:
        time.sleep(0.2)
        body = readiness(url)
    return body


def test_a_slow_redis_costs_at_most_the_budget_then_memory_serves(
    stack: Stack, slow_redis: TcpProxy
) -> None:
    name, _ = stack.user("trading")
    with shared_prefix() as prefix:
        log = stack.logs / f"gateway-slow-{uuid.uuid4().hex[:6]}.log"
        env = {
            **stack.env,
            "GATEWAY_STATE_URL": slow_redis.url(),
            "GATEWAY_STATE_PREFIX": prefix,
            # Far above the delay: only the budget can cut a call short.
            "GATEWAY_STATE_TIMEOUT_SECONDS": "5",
            "GATEWAY_STATE_BUDGET_SECONDS": BUDGET_SECONDS,
            "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000",
        }
        with ServerProcess(GATEWAY_APP, env=env, log_path=log) as gateway:
            assert eventually_status(gateway.url, "ready")["status"] == "ready"
            with httpx.Client(base_url=gateway.url, timeout=PATIENCE_SECONDS) as client:
                login = client.post("/auth/token", json={"username": name, "password": PASSWORD})
                assert login.status_code == 200, login.text
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

                slow_redis.delay = DELAY_SECONDS
                took: list[float] = []
                for _ in range(10):
                    started = time.monotonic()
                    assert client.get("/auth/me", headers=headers).status_code == 200
                    took.append(time.monotonic() - started)
                # One Redis call alone would take 0.9 s: none of them waited for one.
                assert max(took) < 2 * DELAY_SECONDS, took
                assert statistics.median(took) < DELAY_SECONDS, took
                started = time.monotonic()
                again = client.post("/auth/token", json={"username": name, "password": PASSWORD})
                assert again.status_code == 200, again.text
                assert time.monotonic() - started < 2 * DELAY_SECONDS

                body = readiness(gateway.url)
                assert body["status"] == "degraded"
                state = body["state"]
                assert isinstance(state, dict)
                assert state["available"] is False
                assert "slow" in str(state["detail"])

                slow_redis.delay = 0.0
                assert eventually_status(gateway.url, "ready")["status"] == "ready"
                assert client.get("/auth/me", headers=headers).status_code == 200
        warnings = [line for line in log.read_text().splitlines() if "Redis unreachable" in line]
        assert len(warnings) == 1, warnings
        assert "slow" in warnings[0]
