"""Redis down under a running gateway: authentication keeps working in memory, `/readyz`
says so (200, degraded), and when Redis returns the gateway uses it again by itself with
what was revoked meanwhile written to it."""

import time

import httpx
import pytest
import redis

from tests.faults.conftest import BOUND_SECONDS, PASSWORD

pytestmark = pytest.mark.e2e


def wait_for_state(client: httpx.Client, available: bool) -> dict:
    deadline = time.monotonic() + BOUND_SECONDS
    while True:
        body = client.get("/readyz").json()
        if body.get("state", {}).get("available") is available:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_redis_down_and_back(faults):
    name, key = faults.user("trading", api_key=True)
    kept = faults.login(name)
    revoked_meanwhile = faults.login(name)
    with faults.client() as client:
        assert wait_for_state(client, True)["status"] == "ready"
        faults.redis.stop()
        try:
            # Every kind of authentication still works; the first call notices the outage.
            login = client.post("/auth/token", json={"username": name, "password": PASSWORD})
            assert login.status_code == 200
            assert client.get("/api/trading/x", headers={"X-API-Key": key}).status_code == 200
            assert client.get("/api/trading/x", headers=kept).status_code == 200
            assert client.post("/auth/logout", headers=revoked_meanwhile).status_code == 204
            assert client.get("/auth/me", headers=revoked_meanwhile).status_code == 401
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert ready.json()["state"]["available"] is False
        finally:
            faults.redis.start()
        assert wait_for_state(client, True)["status"] == "ready"
        assert client.get("/auth/me", headers=revoked_meanwhile).status_code == 401
        assert client.get("/auth/me", headers=kept).status_code == 200
    log = (faults.logs / "gateway.log").read_text()
    assert log.count("Redis unreachable") == 1
    assert log.count("shared state restored") == 1
    assert faults.redis.password is None or faults.redis.password not in log


def test_a_revocation_made_during_the_outage_reaches_redis(faults):
    name, _ = faults.user("trading")
    token = faults.login(name)
    with faults.client() as client:
        faults.redis.stop()
        try:
            assert client.post("/auth/logout", headers=token).status_code == 204
        finally:
            faults.redis.start()
        wait_for_state(client, True)
    with redis.Redis.from_url(faults.redis.url) as direct:
        assert any(direct.scan_iter(match="lct:gateway:revoked:*"))
