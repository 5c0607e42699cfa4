"""Onboarding, auditing and offboarding through the real processes (uvicorn gateway and
identity service on PostgreSQL), and what survives a gateway restart on in-process state."""

import hashlib
from collections.abc import Callable

import httpx
import pytest

from devstack.servers import ServerProcess
from tests.api_gateway.conftest import PASSWORD
from tests.frontend.stack import PASSWORD as STACK_PASSWORD
from tests.frontend.stack import start_stack

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "velvet quasar mandolin"


@pytest.fixture
def gateway_process(keys, portfolio, upstream, tmp_path) -> Callable[[], ServerProcess]:
    """Return a maker of gateway processes sharing one configuration (and access log)."""
    env = {
        **keys.env(),
        "PORTFOLIO_SERVICE_URL": portfolio.url,
        "TRADING_SERVICE_URL": f"{upstream}/trading",
        "MARKET_SERVICE_URL": f"{upstream}/market",
        "GATEWAY_ACCESS_LOG": str(tmp_path / "access.log"),
    }
    counter = iter(range(100))
    return lambda: ServerProcess(
        "services.api_gateway.app:app", env=env, log_path=tmp_path / f"gw{next(counter)}.log"
    )


def login(client: httpx.Client, name: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post("/auth/token", json={"username": name, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_an_admin_onboards_audits_and_offboards_over_http(gateway_process, portfolio):
    admin, _ = portfolio.user("admin")
    with gateway_process() as gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        headers = login(client, admin)
        created = client.post(
            "/admin/users",
            json={"username": "E2E-Onboarded", "roles": ["trading"]},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        name = created.json()["user"]["username"]
        one_time = created.json()["one_time_password"]
        rotated = client.post(
            "/auth/password/rotate",
            json={"username": name, "current_password": one_time, "new_password": NEW_PASSWORD},
        )
        assert rotated.status_code == 200
        key = client.post(f"/admin/users/{name}/api-key", headers=headers).json()["api_key"]
        assert client.get("/api/trading/x", headers={"X-API-Key": key}).status_code == 200
        own = client.get("/auth/api-key", headers=login(client, name, NEW_PASSWORD)).json()
        assert own["key_id"] == hashlib.sha256(key.encode()).hexdigest()[:16]

        deleted = client.delete(f"/admin/users/{name}", headers=headers)
        assert deleted.status_code == 200
        assert client.get("/api/trading/x", headers={"X-API-Key": key}).status_code == 401

        audit = client.get("/admin/audit", params={"user": name}, headers=headers).json()
        seen = [(e["type"], e["actor"]) for e in reversed(audit["events"])]
        assert seen == [
            ("user.created", admin),
            ("password.rotated", None),
            ("api_key.rotated", admin),
            ("api_key.first_used", None),
            ("login.succeeded", None),
            ("user.deleted", admin),
        ]
        assert key not in str(audit)
        assert one_time not in str(audit)


def test_usage_and_logouts_survive_a_gateway_restart(gateway_process, portfolio):
    admin, _ = portfolio.user("admin")
    name, key = portfolio.user("trading", api_key=True)
    key_id = hashlib.sha256(key.encode()).hexdigest()[:16]
    with gateway_process() as gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        for _ in range(3):
            assert client.get("/api/trading/x", headers={"X-API-Key": key}).status_code == 200
        token = login(client, name)
        assert client.post("/auth/logout", headers=token).status_code == 204
    # A new process: nothing of the first one's memory is left.
    with gateway_process() as gateway, httpx.Client(base_url=gateway.url, timeout=30) as client:
        assert client.get("/auth/me", headers=token).status_code == 401
        headers = login(client, admin)
        usage = client.get("/admin/api-keys/usage", headers=headers).json()
        [entry] = [e for e in usage["keys"] if e["key_id"] == key_id]
        assert entry["requests"] == 3
        assert entry["services"] == {"trading": 3}
        assert entry["status_classes"] == {"2xx": 3}
        assert entry["last_client"] == "127.0.0.1"
        # The trail of what the first process saw is there too.
        audit = client.get("/admin/audit", params={"user": name}, headers=headers).json()
        seen = [e["type"] for e in reversed(audit["events"])]
        assert seen[-3:] == ["api_key.first_used", "login.succeeded", "token.revoked"]


def test_the_last_active_admin_is_409_over_http_saying_why(tmp_path):
    # A stack of its own: the session's identity store holds many admins, so none is the last.
    stack = start_stack(tmp_path)
    try:
        admin = stack.user("admin", prefix="admin")
        with httpx.Client(base_url=stack.gateway_url, timeout=30) as client:
            headers = login(client, admin, STACK_PASSWORD)
            for method, path, body in (
                ("POST", f"/admin/users/{admin}/deactivate", None),
                ("DELETE", f"/admin/users/{admin}", None),
                ("PUT", f"/admin/users/{admin}/roles", {"roles": ["trading"]}),
            ):
                refused = client.request(method, path, json=body, headers=headers)
                assert refused.status_code == 409, (method, path, refused.text)
                assert refused.json()["error"]["code"] == "conflict"
                assert "last active admin" in refused.json()["error"]["message"]
            assert stack.identity.get_user(admin).roles == ["admin"]
            # With a second active admin the first may go.
            stack.user("admin", prefix="admin")
            assert client.delete(f"/admin/users/{admin}", headers=headers).status_code == 200
    finally:
        stack.close()
