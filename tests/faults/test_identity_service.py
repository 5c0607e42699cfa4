"""The identity service down: logins fail with a JSON error in bounded time, issued tokens
keep working, and everything (users included) is back when it returns."""

import pytest

from tests.faults.conftest import PASSWORD

pytestmark = pytest.mark.e2e


def test_identity_service_down_and_back(faults):
    name, key = faults.user("trading", api_key=True)
    bearer = faults.login(name)
    other, other_key = faults.user("trading", api_key=True)
    with faults.client() as client:
        faults.portfolio.stop()
        try:
            login = client.post("/auth/token", json={"username": name, "password": PASSWORD})
            assert login.status_code in (502, 503)
            assert login.json()["error"]["code"] == "upstream_unavailable"
            uncached_key = client.get("/api/trading/x", headers={"X-API-Key": other_key})
            assert uncached_key.status_code in (502, 503)
            assert uncached_key.json()["error"]["code"] == "upstream_unavailable"
            # A token the gateway issued is verified by the gateway alone.
            assert client.get("/api/trading/x", headers=bearer).status_code == 200
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["error"]["code"] == "upstream_unavailable"
            assert ready.json()["error"]["checks"]["identity"] == {
                "status": "down",
                "required": True,
                "detail": "its /readyz does not answer 200",
            }
        finally:
            faults.portfolio.start()
        assert client.get("/readyz").status_code == 200
        again = client.post("/auth/token", json={"username": other, "password": PASSWORD})
        assert again.status_code == 200
        assert client.get("/api/trading/x", headers={"X-API-Key": other_key}).status_code == 200
        assert client.get("/api/trading/x", headers={"X-API-Key": key}).status_code == 200
    assert {name, other} <= {user.username for user in faults.identity.list_users()}
