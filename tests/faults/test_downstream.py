"""A downstream service down or slow: a JSON error in bounded time, then service again."""

import pytest

pytestmark = pytest.mark.e2e


def test_a_downstream_service_down_answers_502_and_recovers_when_it_returns(faults):
    name, key = faults.user("trading", api_key=True)
    headers = {"X-API-Key": key}
    with faults.client() as client:
        assert client.get("/api/trading/orders", headers=headers).status_code == 200
        assert client.get("/readyz").json()["checks"]["trading"]["status"] == "up"
        faults.trading.stop()
        try:
            down = client.get("/api/trading/orders", headers=headers)
            assert down.status_code == 502
            assert down.json()["error"]["code"] == "upstream_unavailable"
            assert "trading" in down.json()["error"]["message"]
            # The gateway still serves every other service: ready, degraded, trading named.
            ready = client.get("/readyz")
            assert ready.status_code == 200
            assert ready.json()["status"] == "degraded"
            assert "trading" in ready.json()["degraded"]
            assert ready.json()["checks"]["trading"] == {
                "status": "down",
                "required": False,
                "detail": "unreachable (ClientConnectorError)",
            }
            assert ready.json()["checks"]["identity"]["status"] == "up"
        finally:
            faults.trading.start()
        back = client.get("/api/trading/orders", headers=headers)
        assert back.status_code == 200
        assert back.json()["user"] == name
        assert client.get("/readyz").json()["checks"]["trading"]["status"] == "up"


def test_a_slow_downstream_service_answers_504_and_others_are_not_held_up(faults):
    _, key = faults.user("market", "trading", api_key=True)
    headers = {"X-API-Key": key}
    with faults.client() as client:
        slow = client.get("/api/market/slow/30", headers=headers)
        assert slow.status_code == 504
        assert slow.json()["error"]["code"] == "upstream_timeout"
        assert client.get("/api/market/prices", headers=headers).status_code == 200
        assert client.get("/api/trading/orders", headers=headers).status_code == 200
