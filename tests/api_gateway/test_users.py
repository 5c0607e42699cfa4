"""The gateway's user-lifecycle, self-service API-key and audit endpoints, in-process,
against the real identity service."""

import uuid

import pytest

from shared.roles import ROLES
from tests.api_gateway.conftest import PASSWORD, running_gateway
from tests.api_gateway.test_routes import bearer, login

USER_CALLS = [
    ("GET", "/admin/audit", None),
    ("POST", "/admin/users", {"username": "somebody", "roles": ["trading"]}),
    ("POST", "/admin/users/somebody/reactivate", None),
    ("DELETE", "/admin/users/somebody", None),
    ("POST", "/admin/users/somebody/password/reset", None),
    ("POST", "/admin/users/somebody/api-key", None),
]
NEW_PASSWORD = "velvet quasar mandolin"


@pytest.mark.parametrize(("method", "path", "body"), USER_CALLS)
@pytest.mark.parametrize("role", [r for r in ROLES if r.value != "admin"], ids=str)
async def test_admin_only_endpoints_refuse_other_roles(gateway, method, path, body, role):
    response = await gateway.client.request(
        method, path, json=body, headers=gateway.bearer("someone", role.value)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body"), USER_CALLS)
async def test_admin_only_endpoints_need_credentials(gateway, method, path, body):
    response = await gateway.client.request(method, path, json=body)
    assert response.status_code == 401


# --- GET /admin/audit -----------------------------------------------------------------


async def test_audit_shows_who_did_what_from_where_in_which_request(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading")
    headers = await bearer(identity_gateway, admin)
    refused = await identity_gateway.client.post(
        "/auth/token",
        json={"username": name, "password": "not the right password"},
        headers={"X-Request-ID": "audit-test-1"},
    )
    assert refused.status_code == 401
    deactivated = await identity_gateway.client.post(
        f"/admin/users/{name}/deactivate", headers=headers
    )
    request_id = deactivated.headers["x-request-id"]

    page = await identity_gateway.client.get("/admin/audit", params={"user": name}, headers=headers)
    assert page.status_code == 200, page.text
    events = page.json()["events"]
    seen = [(e["type"], e["actor"], e["subject"], e["outcome"], e["request_id"]) for e in events]
    assert seen == [
        ("user.deactivated", admin, name, "success", request_id),
        ("login.failed", None, name, "failure", "audit-test-1"),
        ("user.created", None, name, "success", None),
    ]
    assert {e["client_address"] for e in events[:2]} == {"127.0.0.1"}


async def test_audit_pages_with_an_opaque_cursor(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    headers = await bearer(identity_gateway, admin)
    first = await identity_gateway.client.get(
        "/admin/audit", params={"limit": 2, "type": "user.created"}, headers=headers
    )
    assert first.status_code == 200
    assert len(first.json()["events"]) == 2
    cursor = first.json()["next_cursor"]
    second = await identity_gateway.client.get(
        "/admin/audit",
        params={"limit": 2, "type": "user.created", "cursor": cursor},
        headers=headers,
    )
    assert second.status_code == 200
    ids = [e["id"] for e in first.json()["events"] + second.json()["events"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("params", "named"),
    [({"type": "nope"}, "type"), ({"cursor": "zz"}, "cursor"), ({"since": "soon"}, "since")],
)
async def test_audit_refuses_bad_filters_naming_them(identity_gateway, portfolio, params, named):
    admin, _ = portfolio.user("admin")
    response = await identity_gateway.client.get(
        "/admin/audit", params=params, headers=await bearer(identity_gateway, admin)
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert named in response.json()["error"]["message"]


def fresh_name() -> str:
    return f"new-{uuid.uuid4().hex[:10]}"


async def admin_headers(gateway, portfolio) -> dict[str, str]:
    admin, _ = portfolio.user("admin")
    return await bearer(gateway, admin)


# --- POST /admin/users ----------------------------------------------------------------


async def test_an_admin_onboards_a_user_who_sets_their_password_first(identity_gateway, portfolio):
    headers = await admin_headers(identity_gateway, portfolio)
    name = fresh_name()
    created = await identity_gateway.client.post(
        "/admin/users", json={"username": name, "roles": ["trading"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["user"]["must_change_password"] is True
    assert body["user"]["roles"] == ["trading"]
    one_time = body["one_time_password"]
    first = await login(identity_gateway, name, one_time)
    assert first.status_code == 403
    error = first.json()["error"]
    assert error["code"] == "password_expired"
    # A new account is told to set its password, not that it has expired.
    assert error["reason"] == "must_change_password"
    assert error["message"].startswith("set your password")
    assert error["rotate_url"] == "/auth/password/rotate"
    rotated = await identity_gateway.client.post(
        "/auth/password/rotate",
        json={"username": name, "current_password": one_time, "new_password": NEW_PASSWORD},
    )
    assert rotated.status_code == 200, rotated.text
    assert (await login(identity_gateway, name, NEW_PASSWORD)).status_code == 200


async def test_an_admin_chosen_password_is_not_echoed(identity_gateway, portfolio):
    headers = await admin_headers(identity_gateway, portfolio)
    created = await identity_gateway.client.post(
        "/admin/users",
        json={"username": fresh_name(), "roles": ["market"], "password": PASSWORD},
        headers=headers,
    )
    assert created.status_code == 201
    assert created.json()["one_time_password"] is None
    assert PASSWORD not in created.text


@pytest.mark.parametrize("spelling", [str.upper, lambda n: n.upper().translate(_FULL_WIDTH)])
async def test_a_taken_name_is_409_whatever_its_case_or_width(
    identity_gateway, portfolio, spelling
):
    headers = await admin_headers(identity_gateway, portfolio)
    name, _ = portfolio.user("trading")
    taken = await identity_gateway.client.post(
        "/admin/users", json={"username": spelling(name), "roles": ["trading"]}, headers=headers
    )
    assert taken.status_code == 409
    assert taken.json()["error"]["code"] == "conflict"


_FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


@pytest.mark.parametrize(
    ("body", "code", "named"),
    [
        ({"username": "someone-new", "roles": []}, "validation_error", "roles"),
        ({"username": "someone-new", "roles": ["wizard"]}, "validation_error", "roles"),
        ({"roles": ["trading"]}, "validation_error", "username"),
        (
            {"username": "someone-new", "roles": ["trading"], "password": "aaaaaaaaaaaa"},
            "weak_password",
            "too easy to guess",
        ),
    ],
)
async def test_create_user_refusals_name_the_field(identity_gateway, portfolio, body, code, named):
    response = await identity_gateway.client.post(
        "/admin/users", json=body, headers=await admin_headers(identity_gateway, portfolio)
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == code
    assert named in response.json()["error"]["message"]


# --- reactivate, DELETE, password/reset -----------------------------------------------


async def test_offboarding_ends_token_and_key_at_once_and_keeps_the_name(
    identity_gateway, portfolio
):
    headers = await admin_headers(identity_gateway, portfolio)
    name, key = portfolio.user("trading", api_key=True)
    token = await bearer(identity_gateway, name)
    assert (
        await identity_gateway.client.get("/auth/me", headers={"X-API-Key": key})
    ).status_code == 200
    deleted = await identity_gateway.client.delete(f"/admin/users/{name}", headers=headers)
    assert deleted.status_code == 200
    assert deleted.json()["user"]["deleted_at"] is not None
    assert (await identity_gateway.client.get("/auth/me", headers=token)).status_code == 401
    assert (
        await identity_gateway.client.get("/auth/me", headers={"X-API-Key": key})
    ).status_code == 401
    assert (await login(identity_gateway, name)).json()["error"]["code"] == "account_inactive"
    again = await identity_gateway.client.post(
        "/admin/users", json={"username": name, "roles": ["trading"]}, headers=headers
    )
    assert again.status_code == 409
    back = await identity_gateway.client.post(f"/admin/users/{name}/reactivate", headers=headers)
    assert back.status_code == 409
    assert "deleted" in back.json()["error"]["message"]


async def test_a_deactivated_user_is_reactivated(identity_gateway, portfolio):
    headers = await admin_headers(identity_gateway, portfolio)
    name, _ = portfolio.user("trading")
    await identity_gateway.client.post(f"/admin/users/{name}/deactivate", headers=headers)
    assert (await login(identity_gateway, name)).status_code == 403
    back = await identity_gateway.client.post(f"/admin/users/{name}/reactivate", headers=headers)
    assert back.status_code == 200
    assert back.json()["user"]["is_active"] is True
    assert (await login(identity_gateway, name)).status_code == 200


async def test_a_reset_ends_the_users_tokens_and_returns_a_one_time_password(
    identity_gateway, portfolio
):
    headers = await admin_headers(identity_gateway, portfolio)
    name, _ = portfolio.user("trading")
    token = await bearer(identity_gateway, name)
    reset = await identity_gateway.client.post(
        f"/admin/users/{name}/password/reset", headers=headers
    )
    assert reset.status_code == 200
    one_time = reset.json()["one_time_password"]
    assert (await identity_gateway.client.get("/auth/me", headers=token)).status_code == 401
    assert (await login(identity_gateway, name)).status_code == 401
    assert (await login(identity_gateway, name, one_time)).json()["error"]["code"] == (
        "password_expired"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/admin/users/nobody-here/reactivate"),
        ("DELETE", "/admin/users/nobody-here"),
        ("POST", "/admin/users/nobody-here/password/reset"),
        ("POST", "/admin/users/nobody-here/api-key"),
    ],
)
async def test_lifecycle_of_an_unknown_user_is_404(identity_gateway, portfolio, method, path):
    response = await identity_gateway.client.request(
        method, path, headers=await admin_headers(identity_gateway, portfolio)
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


# --- API keys: POST /admin/users/{u}/api-key, GET and POST /auth/api-key ---------------


async def test_an_admin_rotation_stops_the_old_key_at_once(identity_gateway, portfolio):
    headers = await admin_headers(identity_gateway, portfolio)
    name, old = portfolio.user("trading", api_key=True)
    # Cached by the gateway first: the rotation must drop it from the cache.
    assert (
        await identity_gateway.client.get("/auth/me", headers={"X-API-Key": old})
    ).status_code == 200
    rotated = await identity_gateway.client.post(f"/admin/users/{name}/api-key", headers=headers)
    assert rotated.status_code == 200
    body = rotated.json()
    assert body["username"] == name
    assert body["stored_in_managed_store"] is False
    new = body["api_key"]
    me = await identity_gateway.client.get("/auth/me", headers={"X-API-Key": new})
    assert me.json()["key_id"] == body["key_id"]
    assert (
        await identity_gateway.client.get("/auth/me", headers={"X-API-Key": old})
    ).status_code == 401


async def test_a_user_sees_and_rotates_their_own_key(identity_gateway, portfolio):
    name, key = portfolio.user("trading", api_key=True)
    token = await bearer(identity_gateway, name)
    unused = await identity_gateway.client.get("/auth/api-key", headers=token)
    assert unused.status_code == 200
    assert unused.json()["last_used_at"] is None
    await identity_gateway.client.get("/api/trading/x", headers={"X-API-Key": key})
    used = (await identity_gateway.client.get("/auth/api-key", headers=token)).json()
    assert used["key_id"] is not None
    assert used["created_at"] is not None
    assert used["first_used_at"] is not None
    assert used["last_used_at"] is not None
    assert used["last_client"] == "127.0.0.1"
    assert key not in str(used)

    by_key = await identity_gateway.client.post("/auth/api-key", headers={"X-API-Key": key})
    assert by_key.status_code == 403
    rotated = await identity_gateway.client.post("/auth/api-key", headers=token)
    assert rotated.status_code == 200
    assert rotated.json()["key_id"] != used["key_id"]
    assert (
        await identity_gateway.client.get("/auth/me", headers={"X-API-Key": key})
    ).status_code == 401
    fresh = await identity_gateway.client.get(
        "/auth/me", headers={"X-API-Key": rotated.json()["api_key"]}
    )
    assert fresh.status_code == 200
    # A key rotation leaves the user's sign-in alone.
    assert (await identity_gateway.client.get("/auth/me", headers=token)).status_code == 200


async def test_a_user_without_a_key_sees_none(identity_gateway, portfolio):
    name, _ = portfolio.user("market")
    mine = await identity_gateway.client.get(
        "/auth/api-key", headers=await bearer(identity_gateway, name)
    )
    assert mine.status_code == 200
    assert mine.json()["key_id"] is None


# --- OpenAPI --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "codes"),
    [
        ("post", "/admin/users", {"201", "401", "403", "409", "422"}),
        ("post", "/admin/users/{username}/reactivate", {"200", "404", "409"}),
        ("delete", "/admin/users/{username}", {"200", "404", "409"}),
        ("post", "/admin/users/{username}/password/reset", {"200", "404", "409"}),
        ("post", "/admin/users/{username}/api-key", {"200", "404", "409"}),
        ("get", "/auth/api-key", {"200", "401"}),
        ("post", "/auth/api-key", {"200", "401", "403"}),
        ("get", "/admin/audit", {"200", "401", "403", "422"}),
        ("post", "/admin/users/{username}/deactivate", {"200", "404", "409"}),
        ("put", "/admin/users/{username}/roles", {"200", "404", "409", "422"}),
    ],
)
async def test_openapi_documents_each_endpoint_and_its_errors(gateway, method, path, codes):
    document = (await gateway.client.get("/openapi.json")).json()
    operation = document["paths"][path][method]
    assert codes <= set(operation["responses"])
    assert operation["description"]


async def test_a_login_the_gateway_throttles_is_audited_once_a_minute(
    make_settings, keys, portfolio
):
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading")
    settings = make_settings(portfolio_service_url=portfolio.url, gateway_login_max_attempts=2)
    async with running_gateway(settings, keys.secrets()) as gateway:
        for _ in range(2):
            assert (await login(gateway, name, "wrong password!")).status_code == 401
        for _ in range(3):
            assert (await login(gateway, name)).status_code == 429
        page = await gateway.client.get(
            "/admin/audit",
            params={"user": name, "type": "login.throttled"},
            headers=await bearer(gateway, admin),
        )
    [event] = page.json()["events"]
    assert (event["subject"], event["outcome"], event["client_address"]) == (
        name,
        "failure",
        "127.0.0.1",
    )
