"""Two real gateway processes on different ports sharing the real Redis at 127.0.0.1:6379."""

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest

from devstack.databases import SHARED_REDIS_URL, shared_prefix
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from shared.roles import SERVICES
from tests.api_gateway.conftest import PASSWORD


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


pytestmark = pytest.mark.e2e

MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def replicas(keys, portfolio, upstream, tmp_path_factory) -> Iterator[tuple[str, str]]:
    logs = tmp_path_factory.mktemp("replicas")
    with shared_prefix() as prefix, ExitStack() as stack:
        env = {
            **keys.env(),
            "GATEWAY_STATE_URL": SHARED_REDIS_URL,
            "GATEWAY_STATE_PREFIX": prefix,
            "GATEWAY_LOGIN_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
            **{
                f"{service.value.upper()}_SERVICE_URL": f"{upstream}/{service.value}"
                for service in SERVICES
            },
            "PORTFOLIO_SERVICE_URL": portfolio.url,
        }
        urls = tuple(
            stack.enter_context(
                ServerProcess(GATEWAY_APP, env=env, log_path=logs / f"gateway-{n}.log")
            ).url
            for n in (1, 2)
        )
        yield urls[0], urls[1]


def login(url: str, username: str, password: str = PASSWORD) -> httpx.Response:
    return httpx.post(url + "/auth/token", json={"username": username, "password": password})


def bearer(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_a_token_revoked_through_one_replica_is_refused_by_the_other(replicas, portfolio):
    one, two = replicas
    name, _ = portfolio.user("trading")
    headers = bearer(login(one, name))
    assert httpx.get(two + "/auth/me", headers=headers).status_code == 200
    assert httpx.post(one + "/auth/logout", headers=headers).status_code == 204
    refused = httpx.get(two + "/auth/me", headers=headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_token"


def test_failed_logins_on_one_replica_count_on_the_other(replicas, portfolio):
    one, two = replicas
    name, _ = portfolio.user("trading")
    for attempt in range(MAX_ATTEMPTS):
        url = (one, two)[attempt % 2]
        assert login(url, name, "wrong password").status_code == 401
    for url in replicas:
        refused = login(url, name)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_attempts"


def test_api_key_usage_sums_across_replicas(replicas, portfolio):
    one, two = replicas
    _, key = portfolio.user("trading", "market", api_key=True)
    admin, _ = portfolio.user("admin")
    calls = [(one, "trading"), (one, "trading"), (two, "market"), (two, "trading")]
    for url, service in calls:
        assert httpx.get(f"{url}/api/{service}/x", headers={"X-API-Key": key}).status_code == 200
    for url in replicas:
        usage = httpx.get(url + "/admin/api-keys/usage", headers=bearer(login(url, admin)))
        [entry] = [e for e in usage.json()["keys"] if e["key_id"] == sha256_hex(key)[:16]]
        assert entry["requests"] == 4
        assert entry["services"] == {"trading": 3, "market": 1}


def test_a_user_deactivated_through_one_replica_loses_the_cached_key_on_the_other(
    replicas, portfolio
):
    one, two = replicas
    name, key = portfolio.user("trading", api_key=True)
    admin, _ = portfolio.user("admin")
    assert httpx.get(two + "/api/trading/x", headers={"X-API-Key": key}).status_code == 200
    deactivated = httpx.post(
        f"{one}/admin/users/{name}/deactivate", headers=bearer(login(one, admin))
    )
    assert deactivated.status_code == 200
    assert httpx.get(two + "/api/trading/x", headers={"X-API-Key": key}).status_code in (401, 403)


@pytest.mark.parametrize("who", ["admin", "self"])
def test_a_key_rotated_through_one_replica_is_refused_by_the_other_at_once(
    replicas, portfolio, who
):
    one, two = replicas
    name, old = portfolio.user("trading", api_key=True)
    admin, _ = portfolio.user("admin")
    # Cached on the second replica first: the rotation on the first must drop it there too.
    assert httpx.get(two + "/api/trading/x", headers={"X-API-Key": old}).status_code == 200
    if who == "admin":
        rotated = httpx.post(f"{one}/admin/users/{name}/api-key", headers=bearer(login(one, admin)))
    else:
        rotated = httpx.post(one + "/auth/api-key", headers=bearer(login(one, name)))
    assert rotated.status_code == 200, rotated.text
    assert httpx.get(two + "/api/trading/x", headers={"X-API-Key": old}).status_code == 401
    new = {"X-API-Key": rotated.json()["api_key"]}
    assert httpx.get(two + "/api/trading/x", headers=new).status_code == 200


@pytest.mark.parametrize("action", ["password/reset", "delete"])
def test_a_reset_or_delete_through_one_replica_ends_tokens_and_key_on_the_other(
    replicas, portfolio, action
):
    one, two = replicas
    name, key = portfolio.user("trading", api_key=True)
    admin, _ = portfolio.user("admin")
    token = bearer(login(two, name))
    assert httpx.get(two + "/api/trading/x", headers={"X-API-Key": key}).status_code == 200
    headers = bearer(login(one, admin))
    if action == "delete":
        done = httpx.delete(f"{one}/admin/users/{name}", headers=headers)
    else:
        done = httpx.post(f"{one}/admin/users/{name}/{action}", headers=headers)
    assert done.status_code == 200, done.text
    assert httpx.get(two + "/auth/me", headers=token).status_code == 401
    keyed = httpx.get(two + "/api/trading/x", headers={"X-API-Key": key}).status_code
    # A reset leaves the key alone (only the password changed); a deleted account has none.
    assert keyed == (200 if action == "password/reset" else 401)


def test_readyz_shows_the_shared_state_on_each_replica(replicas):
    for url in replicas:
        ready = httpx.get(url + "/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        assert ready.json()["state"] == {
            "backend": "redis",
            "available": True,
            "detail": "shared by every replica",
        }
        assert ready.json()["checks"]["redis"] == {
            "status": "up",
            "required": False,
            "detail": "shared by every replica",
        }
