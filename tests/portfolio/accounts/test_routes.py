"""The internal identity API (`/internal/identity/*`), in-process, per docs/CONTRACTS.md."""

import threading
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest

from tests.portfolio.conftest import PASSWORD, make_settings
from tests.portfolio.http import SERVICE_TOKEN, open_client

USER_FIELDS = {
    "username",
    "roles",
    "is_active",
    "created_at",
    "updated_at",
    "last_login_at",
    "password_changed_at",
    "password_expires_at",
    "api_key_id",
    "api_key_last_rotated_at",
    "access_changed_at",
}


@pytest.fixture
async def app_client(settings):
    async with open_client(settings) as (app, client):
        yield app, client


@pytest.fixture
def client(app_client):
    return app_client[1]


@pytest.fixture
def identity(app_client):
    return app_client[0].state.runtime.identity


def assert_error(response: httpx.Response, status: int, code: str) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


# The service token


@pytest.mark.parametrize("token", [None, "", "wrong-token-" + "x" * 30, SERVICE_TOKEN + "x"])
async def test_calls_without_the_service_token_are_refused(client, token):
    request = client.build_request("GET", "/internal/identity/users")
    if token is None:
        del request.headers["X-Service-Token"]
    else:
        request.headers["X-Service-Token"] = token
    assert_error(await client.send(request), 401, "invalid_token")


async def test_service_token_is_checked_before_the_body(client):
    response = await client.post(
        "/internal/identity/authenticate", json={}, headers={"X-Service-Token": "nope"}
    )
    assert_error(response, 401, "invalid_token")


# POST /internal/identity/authenticate


async def test_authenticate_returns_the_user(client, identity):
    await identity.create_user("alice", PASSWORD, ["trading", "market"])
    response = await client.post(
        "/internal/identity/authenticate", json={"username": "Alice", "password": PASSWORD}
    )
    assert response.status_code == 200
    user = response.json()["user"]
    assert set(user) >= USER_FIELDS
    assert not any("hash" in key for key in user)
    assert user["username"] == "alice"
    assert user["roles"] == ["trading", "market"]
    assert user["last_login_at"].endswith("Z")
    assert datetime.fromisoformat(user["last_login_at"]).utcoffset() == timedelta(0)
    assert user["api_key_id"] is None


async def test_wrong_password_and_unknown_user_answer_identically(client, identity):
    await identity.create_user("bob", PASSWORD, ["trading"])
    wrong = await client.post(
        "/internal/identity/authenticate", json={"username": "bob", "password": "wrong pass 123"}
    )
    unknown = await client.post(
        "/internal/identity/authenticate", json={"username": "nobody", "password": PASSWORD}
    )
    assert_error(wrong, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()
    assert wrong.status_code == unknown.status_code


async def test_expired_password_is_403_password_expired(client, identity):
    await identity.create_user("admin", PASSWORD, ["admin"], must_change_password=True)
    response = await client.post(
        "/internal/identity/authenticate", json={"username": "admin", "password": PASSWORD}
    )
    assert_error(response, 403, "password_expired")


async def test_inactive_account_is_403_account_inactive(client, identity):
    await identity.create_user("carol", PASSWORD, ["trading"])
    await identity.deactivate_user("carol")
    response = await client.post(
        "/internal/identity/authenticate", json={"username": "carol", "password": PASSWORD}
    )
    assert_error(response, 403, "account_inactive")


async def test_repeated_failures_answer_429_with_retry_after(client, identity):
    await identity.create_user("dave", PASSWORD, ["trading"])
    for _ in range(5):
        response = await client.post(
            "/internal/identity/authenticate", json={"username": "dave", "password": "x" * 12}
        )
        assert response.status_code == 401
    response = await client.post(
        "/internal/identity/authenticate", json={"username": "dave", "password": PASSWORD}
    )
    error = assert_error(response, 429, "too_many_attempts")
    assert 1 <= error["retry_after"] <= 30
    assert response.headers["Retry-After"] == str(error["retry_after"])


async def test_a_login_finding_every_hashing_slot_taken_answers_503_identity_busy(sqlite_url):
    settings = make_settings(sqlite_url, hashing_concurrency=1, hashing_queue=0)
    async with open_client(settings) as (app, client):
        hasher = app.state.runtime.identity._hasher
        await app.state.runtime.identity.create_user("erin", PASSWORD, ["trading"])
        held = threading.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(hasher.slots.run, held.wait, 30)
            while hasher.slots.running < 1:
                await anyio.sleep(0.01)
            for name in ("erin", "nobody-here"):
                response = await client.post(
                    "/internal/identity/authenticate", json={"username": name, "password": PASSWORD}
                )
                error = assert_error(response, 503, "identity_busy")
                assert error["retry_after"] >= 1
                assert response.headers["Retry-After"] == str(error["retry_after"])
            held.set()
        response = await client.post(
            "/internal/identity/authenticate", json={"username": "erin", "password": PASSWORD}
        )
        assert response.status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "bob"}, "password"),
        ({"password": PASSWORD}, "username"),
        ({"username": ["bob"], "password": PASSWORD}, "username"),
        ({"username": "bob", "password": "p" * 5000}, "password"),
    ],
)
async def test_malformed_bodies_name_the_field_and_never_echo_it(client, body, field):
    response = await client.post("/internal/identity/authenticate", json=body)
    error = assert_error(response, 422, "validation_error")
    assert field in error["message"]
    assert error["fields"] == [field]
    assert "ppppp" not in response.text


async def test_a_body_that_is_not_json_is_a_clear_error(client):
    response = await client.post(
        "/internal/identity/authenticate",
        content=b'{"username": "bob",',
        headers={"Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "validation_error")
    assert "not valid JSON" in error["message"]


# POST /internal/identity/api-keys/verify


async def test_verify_api_key_returns_user_and_key_id(client, identity):
    await identity.create_user("erin", PASSWORD, ["market"])
    rotation = await identity.rotate_api_key("erin")
    response = await client.post(
        "/internal/identity/api-keys/verify", json={"api_key": rotation.api_key}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["user"]["username"] == "erin"
    assert body["key_id"] == rotation.user.api_key_id == body["user"]["api_key_id"]
    assert len(body["key_id"]) == 16


async def test_unknown_api_key_is_401(client):
    response = await client.post("/internal/identity/api-keys/verify", json={"api_key": "k" * 64})
    assert_error(response, 401, "invalid_credentials")


async def test_deactivated_users_api_key_answers_like_an_unknown_key(client, identity):
    await identity.create_user("frank", PASSWORD, ["market"])
    key = (await identity.rotate_api_key("frank")).api_key
    await client.post("/internal/identity/users/frank/deactivate")
    response = await client.post("/internal/identity/api-keys/verify", json={"api_key": key})
    unknown = await client.post("/internal/identity/api-keys/verify", json={"api_key": "k" * 64})
    assert_error(response, 401, "invalid_credentials")
    assert response.json() == unknown.json()


# POST /internal/identity/password/rotate


async def test_rotate_password_works_on_an_expired_password(client, identity):
    await identity.create_user("grace", PASSWORD, ["trading"], must_change_password=True)
    response = await client.post(
        "/internal/identity/password/rotate",
        json={
            "username": "grace",
            "current_password": PASSWORD,
            "new_password": "velvet quasar mandolin",
        },
    )
    assert response.status_code == 200
    assert response.json()["user"]["must_change_password"] is False
    login = await client.post(
        "/internal/identity/authenticate",
        json={"username": "grace", "password": "velvet quasar mandolin"},
    )
    assert login.status_code == 200


@pytest.mark.parametrize(
    ("current", "new", "status", "code"),
    [
        ("wrong current pw", "velvet quasar mandolin", 401, "invalid_credentials"),
        (PASSWORD, "short", 422, "weak_password"),
        (PASSWORD, PASSWORD, 422, "weak_password"),
        (PASSWORD, "n" * 1025, 422, "weak_password"),
    ],
)
async def test_rotate_password_refusals(client, identity, current, new, status, code):
    await identity.create_user("heidi", PASSWORD, ["trading"])
    response = await client.post(
        "/internal/identity/password/rotate",
        json={"username": "heidi", "current_password": current, "new_password": new},
    )
    assert_error(response, status, code)


# Users


async def test_list_users(client, identity):
    await identity.create_user("ivan", PASSWORD, ["trading"])
    await identity.create_user("judy", PASSWORD, ["admin"])
    response = await client.get("/internal/identity/users")
    assert response.status_code == 200
    users = response.json()["users"]
    assert [u["username"] for u in users] == ["ivan", "judy"]
    assert all(set(u) >= USER_FIELDS for u in users)


async def test_get_user_and_unknown_user(client, identity):
    await identity.create_user("kim", PASSWORD, ["trading"])
    assert (await client.get("/internal/identity/users/kim")).json()["user"]["username"] == "kim"
    error = assert_error(await client.get("/internal/identity/users/ghost"), 404, "not_found")
    assert "ghost" in error["message"]


async def test_deactivate_user(client, identity):
    await identity.create_user("liam", PASSWORD, ["trading"])
    response = await client.post("/internal/identity/users/liam/deactivate")
    assert response.json()["user"]["is_active"] is False
    assert_error(await client.post("/internal/identity/users/ghost/deactivate"), 404, "not_found")


async def test_set_roles(client, identity):
    await identity.create_user("mia", PASSWORD, ["trading"])
    response = await client.put("/internal/identity/users/mia/roles", json={"roles": ["market"]})
    assert response.json()["user"]["roles"] == ["market"]
    bad = await client.put("/internal/identity/users/mia/roles", json={"roles": ["root"]})
    error = assert_error(bad, 422, "validation_error")
    assert "'root'" in error["message"]
    assert "admin" in error["message"]
    missing = await client.put("/internal/identity/users/ghost/roles", json={"roles": ["market"]})
    assert_error(missing, 404, "not_found")


# GET /internal/identity/audit


async def test_audit_records_the_gateways_actor_client_and_request_id(client, identity):
    await identity.create_user("xxx", PASSWORD, ["portfolio"])
    headers = {"X-Audit-Actor": "Root", "X-Audit-Client": "198.51.100.4", "X-Request-ID": "r-42"}
    refused = await client.post(
        "/internal/identity/authenticate",
        json={"username": "xxx", "password": "a wrong long password"},
        headers=headers,
    )
    assert refused.status_code == 401
    page = await client.get("/internal/identity/audit", params={"type": "login.failed"})
    assert page.status_code == 200, page.text
    (event,) = page.json()["events"]
    fields = ("type", "actor", "subject", "client_address", "request_id", "outcome")
    assert {name: event[name] for name in fields} == {
        "type": "login.failed",
        "actor": "root",
        "subject": "xxx",
        "client_address": "198.51.100.4",
        "request_id": "r-42",
        "outcome": "failure",
    }
    assert page.json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"type": "nope"}, "type must be one of"),
        ({"cursor": "garbage"}, "cursor"),
        ({"user": "has space"}, "user"),
        ({"since": "yesterday"}, "since"),
        ({"since": "0001-01-01T00:00:00+01:00"}, "since"),
        ({"cursor": "eyJiZWZvcmUiOjEwMDAwMDAwMDAwMDAwMDAwMDAwMDB9"}, "cursor"),  # 10**21
        ({"limit": "0"}, "limit"),
    ],
)
async def test_audit_refuses_bad_filters_naming_them(client, params, named):
    error = assert_error(
        await client.get("/internal/identity/audit", params=params), 422, "validation_error"
    )
    assert named in error["message"]


# The lifecycle: POST /users, reactivate, DELETE, password/reset, api-key


async def test_create_user_returns_201_and_a_one_time_password(client):
    created = await client.post(
        "/internal/identity/users", json={"username": "Olive", "roles": ["trading"]}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["user"]["username"] == "olive"
    assert body["user"]["must_change_password"] is True
    assert len(body["one_time_password"]) == 24
    again = await client.post(
        "/internal/identity/users", json={"username": "OLIVE", "roles": ["trading"]}
    )
    assert "already exists" in assert_error(again, 409, "conflict")["message"]


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        ({"username": "pat", "roles": []}, 422, "validation_error", "roles"),
        ({"username": "pat"}, 422, "validation_error", "roles"),
        ({"username": "pat", "roles": ["wizard"]}, 422, "validation_error", "wizard"),
        ({"username": "p a t", "roles": ["market"]}, 422, "validation_error", "username"),
        (
            {"username": "pat", "roles": ["market"], "password": "aaaaaaaaaaaa"},
            422,
            "weak_password",
            "too easy to guess",
        ),
    ],
)
async def test_create_user_refusals_name_the_problem(client, body, status, code, named):
    error = assert_error(await client.post("/internal/identity/users", json=body), status, code)
    assert named in error["message"]


async def test_lifecycle_endpoints_answer_with_the_user(client, identity):
    await identity.create_user("quinn", PASSWORD, ["admin"])
    await identity.create_user("rosa", PASSWORD, ["admin"])
    await identity.deactivate_user("rosa")
    back = await client.post("/internal/identity/users/rosa/reactivate")
    assert back.status_code == 200
    assert back.json()["user"]["is_active"] is True
    reset = await client.post("/internal/identity/users/rosa/password/reset")
    assert reset.status_code == 200
    assert reset.json()["user"]["must_change_password"] is True
    assert reset.json()["one_time_password"]
    key = await client.post("/internal/identity/users/rosa/api-key")
    assert key.status_code == 200
    assert key.json()["key_id"] == key.json()["user"]["api_key_id"]
    assert key.json()["api_key"]
    gone = await client.delete("/internal/identity/users/rosa")
    assert gone.status_code == 200
    assert gone.json()["user"]["deleted_at"] is not None
    last = await client.delete("/internal/identity/users/quinn")
    assert "last active admin" in assert_error(last, 409, "conflict")["message"]
    deleted = await client.post("/internal/identity/users/rosa/reactivate")
    assert "deleted" in assert_error(deleted, 409, "conflict")["message"]
    assert_error(await client.delete("/internal/identity/users/nobody"), 404, "not_found")


# What a gateway on in-process state keeps here: /tokens/revoked, /api-keys/usage


async def test_revocations_and_usage_round_trip(client):
    revoked = await client.post(
        "/internal/identity/tokens/revoked",
        json={"jti": "j-1", "username": "Alice", "expires_at": "2999-01-01T00:00:00Z"},
    )
    assert revoked.status_code == 200, revoked.text
    listed = await client.get("/internal/identity/tokens/revoked")
    assert [r["jti"] for r in listed.json()["revoked"]] == ["j-1"]
    count = {
        "key_id": "0123456789abcdef",
        "username": "alice",
        "requests": 2,
        "services": {"trading": 2},
        "status_classes": {"2xx": 2},
        "first_used_at": "2025-01-15T12:00:00Z",
        "last_used_at": "2025-01-15T12:01:00Z",
        "last_client": "192.0.2.1",
    }
    for _ in range(2):
        saved = await client.post("/internal/identity/api-keys/usage", json={"keys": [count]})
        assert saved.status_code == 200
    [total] = (await client.get("/internal/identity/api-keys/usage")).json()["keys"]
    assert total["requests"] == 4


@pytest.mark.parametrize(
    ("path", "body", "named"),
    [
        (
            "/internal/identity/tokens/revoked",
            {"jti": "j", "username": "alice", "expires_at": "2999-01-01T00:00:00"},
            "expires_at",
        ),
        (
            "/internal/identity/api-keys/usage",
            {
                "keys": [
                    {
                        "key_id": "k",
                        "username": "alice",
                        "requests": 10**12,
                        "services": {},
                        "status_classes": {},
                        "first_used_at": "2025-01-15T12:00:00Z",
                        "last_used_at": "2025-01-15T12:00:00Z",
                    }
                ]
            },
            "requests",
        ),
    ],
)
async def test_gateway_state_refuses_what_it_cannot_store(client, path, body, named):
    error = assert_error(await client.post(path, json=body), 422, "validation_error")
    assert named in error["message"]
