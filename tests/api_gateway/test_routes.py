import hashlib
import secrets
from datetime import datetime

import asyncpg
import jwt
import pytest

from devstack.ports import free_port
from shared.roles import ROLES, SERVICES, services_for
from tests.api_gateway.conftest import PASSWORD, running_gateway


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


NEW_PASSWORD = "an even longer new passphrase"


async def login(gateway, username, password=PASSWORD):
    return await gateway.client.post(
        "/auth/token", json={"username": username, "password": password}
    )


async def bearer(gateway, username) -> dict[str, str]:
    response = await login(gateway, username)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


# --- POST /auth/token -----------------------------------------------------------------


async def test_json_login_issues_a_token(identity_gateway, portfolio):
    name, _ = portfolio.user("trading", "market")
    response = await login(identity_gateway, name)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["roles"] == ["trading", "market"]
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == name
    assert datetime.fromisoformat(body["expires_at"]).timestamp() == claims["exp"]


async def test_oauth2_password_form_login_issues_a_token(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    response = await identity_gateway.client.post(
        "/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.json()["roles"] == ["trading"]


async def test_wrong_user_and_wrong_password_get_identical_answers(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    wrong_password = await login(identity_gateway, name, "not the password at all")
    wrong_user = await login(identity_gateway, "nobody-" + name, PASSWORD)
    assert wrong_password.status_code == wrong_user.status_code == 401
    assert wrong_password.json() == wrong_user.json()
    assert wrong_password.json()["error"]["code"] == "invalid_credentials"


async def test_expired_password_points_to_the_rotate_endpoint(identity_gateway, portfolio):
    name, _ = portfolio.user("trading", must_change_password=True)
    response = await login(identity_gateway, name)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "password_expired"
    assert error["rotate_url"] == "/auth/password/rotate"
    assert "POST /auth/password/rotate" in error["message"]
    # A new account's first password, not an old one: said so, with its own reason.
    assert error["reason"] == "must_change_password"
    assert error["message"].startswith("set your password: a new account (or a reset one)")


async def test_a_password_past_its_age_is_expired_not_a_first_password(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    # Age the password past the 90-day rotation period in the identity store itself.
    connection = await asyncpg.connect(portfolio.database_url.replace("+asyncpg", ""))
    try:
        await connection.execute(
            "UPDATE user_accounts SET password_changed_at = '2000-01-01T00:00:00+00'"
            " WHERE username = $1",
            name,
        )
    finally:
        await connection.close()
    response = await login(identity_gateway, name)
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "password_expired",
        "message": "the password has expired; set a new one with POST /auth/password/rotate",
        "rotate_url": "/auth/password/rotate",
        "reason": "expired",
    }


async def test_expired_password_can_be_rotated_then_used(identity_gateway, portfolio):
    name, _ = portfolio.user("trading", must_change_password=True)
    response = await identity_gateway.client.post(
        "/auth/password/rotate",
        json={"username": name, "current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert response.status_code == 200
    assert response.json()["username"] == name
    assert (await login(identity_gateway, name, NEW_PASSWORD)).status_code == 200


async def test_rotating_a_password_revokes_the_users_tokens(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    headers = await bearer(identity_gateway, name)
    await identity_gateway.client.post(
        "/auth/password/rotate",
        json={"username": name, "current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert (await identity_gateway.client.get("/auth/me", headers=headers)).status_code == 401


async def test_weak_new_password_is_refused_naming_the_problem(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    response = await identity_gateway.client.post(
        "/auth/password/rotate",
        json={"username": name, "current_password": PASSWORD, "new_password": "short"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "weak_password"


async def test_inactive_account_cannot_log_in(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    portfolio.service.deactivate_user(name)
    response = await login(identity_gateway, name)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "account_inactive"


@pytest.mark.parametrize(
    ("body", "field"),
    [({"password": "x"}, "username"), ({"username": "x"}, "password"), ({}, "username")],
)
async def test_login_without_a_field_names_it(identity_gateway, body, field):
    response = await identity_gateway.client.post("/auth/token", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert field in response.json()["error"]["message"]


async def test_login_with_a_non_json_body_says_what_is_expected(identity_gateway):
    response = await identity_gateway.client.post(
        "/auth/token", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert "username" in response.json()["error"]["message"]


async def test_logins_are_throttled_per_account(make_settings, keys, portfolio):
    name, _ = portfolio.user("trading")
    settings = make_settings(portfolio_service_url=portfolio.url, gateway_login_max_attempts=3)
    async with running_gateway(settings, keys.secrets()) as gateway:
        for _ in range(3):
            assert (await login(gateway, name, "wrong password!")).status_code == 401
        response = await login(gateway, name)  # even the right password waits
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_attempts"
    assert int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["retry_after"] == int(response.headers["Retry-After"])


async def test_logins_are_throttled_per_client_address(make_settings, keys, portfolio):
    name, _ = portfolio.user("trading")
    settings = make_settings(
        portfolio_service_url=portfolio.url, gateway_login_max_attempts_per_address=3
    )
    async with running_gateway(settings, keys.secrets(), client=("198.51.100.7", 1)) as gateway:
        for attempt in range(3):
            assert (await login(gateway, f"nobody-{attempt}-{name}")).status_code == 401
        assert (await login(gateway, name)).status_code == 429
    async with running_gateway(settings, keys.secrets(), client=("198.51.100.8", 1)) as gateway:
        assert (await login(gateway, name)).status_code == 200


async def test_successful_logins_use_up_no_attempt(make_settings, keys, portfolio):
    name, _ = portfolio.user("trading")
    settings = make_settings(
        portfolio_service_url=portfolio.url,
        gateway_login_max_attempts=2,
        gateway_login_max_attempts_per_address=2,
    )
    async with running_gateway(settings, keys.secrets()) as gateway:
        statuses = [(await login(gateway, name)).status_code for _ in range(5)]
    assert statuses == [200] * 5


async def test_logins_the_identity_service_never_judged_use_up_no_attempt(make_settings, keys):
    settings = make_settings(
        portfolio_service_url=f"http://127.0.0.1:{free_port()}",
        gateway_login_max_attempts=2,
        gateway_login_max_attempts_per_address=2,
    )
    async with running_gateway(settings, keys.secrets()) as gateway:
        statuses = [(await login(gateway, "alice")).status_code for _ in range(5)]
    assert statuses == [502] * 5


async def test_login_with_the_identity_service_down_is_503_not_a_hang(make_settings, keys):
    settings = make_settings(portfolio_service_url=f"http://127.0.0.1:{free_port()}")
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await login(gateway, "alice")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"


# --- /auth/me, /auth/logout, API keys -------------------------------------------------


@pytest.mark.parametrize("role", ROLES, ids=str)
async def test_me_lists_the_services_the_roles_reach(identity_gateway, portfolio, role):
    name, _ = portfolio.user(role.value)
    response = await identity_gateway.client.get(
        "/auth/me", headers=await bearer(identity_gateway, name)
    )
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == name
    assert body["roles"] == [role.value]
    assert body["services"] == [s.value for s in services_for([role.value])]
    assert body["auth_method"] == "password"
    assert body["expires_at"] is not None


async def test_me_with_an_api_key(identity_gateway, portfolio):
    name, key = portfolio.user("market", api_key=True)
    response = await identity_gateway.client.get("/auth/me", headers={"X-API-Key": key})
    assert response.status_code == 200
    body = response.json()
    assert (body["username"], body["services"], body["auth_method"]) == (
        name,
        ["market"],
        "api_key",
    )
    assert body["key_id"] == sha256_hex(key)[:16]
    assert body["expires_at"] is None


async def test_me_without_credentials_is_401(identity_gateway):
    response = await identity_gateway.client.get("/auth/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_logout_revokes_the_token_everywhere(identity_gateway, portfolio):
    name, _ = portfolio.user("trading")
    headers = await bearer(identity_gateway, name)
    assert (await identity_gateway.client.post("/auth/logout", headers=headers)).status_code == 204
    for path in ("/auth/me", "/api/trading/x"):
        response = await identity_gateway.client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "invalid_token",
            "message": "the access token has been revoked",
        }


async def test_wrong_api_key_is_401_invalid_credentials(identity_gateway):
    response = await identity_gateway.client.get("/auth/me", headers={"X-API-Key": "x" * 64})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


async def test_api_key_verification_is_cached_by_hash_not_by_key(identity_gateway, portfolio):
    _, key = portfolio.user("trading", api_key=True)
    assert (
        await identity_gateway.client.get("/api/trading/x", headers={"X-API-Key": key})
    ).status_code == 200
    state = identity_gateway.runtime.state
    assert await state.cached_api_key(sha256_hex(key)) is not None
    assert await state.cached_api_key(key) is None


async def test_rotated_api_key_stops_working_once_the_cache_lapses(make_settings, keys, portfolio):
    name, old_key = portfolio.user("trading", api_key=True)
    settings = make_settings(portfolio_service_url=portfolio.url, gateway_api_key_cache_seconds=0)
    async with running_gateway(settings, keys.secrets()) as gateway:
        assert (
            await gateway.client.get("/api/trading/x", headers={"X-API-Key": old_key})
        ).status_code == 200
        new_key = portfolio.service.rotate_api_key(name, secrets.token_hex(32)).api_key
        old = await gateway.client.get("/api/trading/x", headers={"X-API-Key": old_key})
        new = await gateway.client.get("/api/trading/x", headers={"X-API-Key": new_key})
    assert old.status_code == 401
    assert old.json()["error"]["code"] == "invalid_credentials"
    assert new.status_code == 200
    assert new.json()["caller"]["auth"] == "api_key"


# --- /admin ---------------------------------------------------------------------------


ADMIN_CALLS = [
    ("GET", "/admin/api-keys/usage", None),
    ("GET", "/admin/users", None),
    ("POST", "/admin/users/somebody/deactivate", None),
    ("PUT", "/admin/users/somebody/roles", {"roles": ["trading"]}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
@pytest.mark.parametrize("role", [r for r in ROLES if r.value != "admin"], ids=str)
async def test_admin_endpoints_refuse_other_roles(gateway, method, path, body, role):
    response = await gateway.client.request(
        method, path, json=body, headers=gateway.bearer("someone", role.value)
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_admin_endpoints_need_credentials(gateway, method, path, body):
    response = await gateway.client.request(method, path, json=body)
    assert response.status_code == 401


async def test_admin_lists_users_without_secrets(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading", api_key=True)
    response = await identity_gateway.client.get(
        "/admin/users", headers=await bearer(identity_gateway, admin)
    )
    assert response.status_code == 200
    users = {user["username"]: user for user in response.json()["users"]}
    assert users[name]["roles"] == ["trading"]
    assert users[name]["is_active"] is True
    assert set(users[name]) >= {"api_key_id", "password_expires_at", "last_login_at"}
    assert not any("hash" in field for field in users[name])


async def test_deactivating_a_user_stops_their_api_key_and_tokens_at_once(
    identity_gateway, portfolio
):
    admin, _ = portfolio.user("admin")
    name, key = portfolio.user("trading", api_key=True)
    user_token = await bearer(identity_gateway, name)
    assert (
        await identity_gateway.client.get("/api/trading/x", headers={"X-API-Key": key})
    ).status_code == 200

    response = await identity_gateway.client.post(
        f"/admin/users/{name}/deactivate", headers=await bearer(identity_gateway, admin)
    )
    assert response.status_code == 200
    assert response.json()["user"]["is_active"] is False
    by_key = await identity_gateway.client.get("/api/trading/x", headers={"X-API-Key": key})
    by_token = await identity_gateway.client.get("/api/trading/x", headers=user_token)
    # Answered like an unknown key: "inactive" would confirm the key is real.
    assert by_key.status_code == 401
    assert by_key.json()["error"]["code"] == "invalid_credentials"
    assert by_token.status_code == 401


async def test_deactivating_an_unknown_user_is_404(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    response = await identity_gateway.client.post(
        "/admin/users/nobody-at-all/deactivate", headers=await bearer(identity_gateway, admin)
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_changed_roles_apply_at_once(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, key = portfolio.user("trading", api_key=True)
    assert (
        await identity_gateway.client.get("/api/trading/x", headers={"X-API-Key": key})
    ).status_code == 200
    response = await identity_gateway.client.put(
        f"/admin/users/{name}/roles",
        json={"roles": ["market"]},
        headers=await bearer(identity_gateway, admin),
    )
    assert response.status_code == 200
    assert response.json()["user"]["roles"] == ["market"]
    assert (
        await identity_gateway.client.get("/api/trading/x", headers={"X-API-Key": key})
    ).status_code == 403
    assert (
        await identity_gateway.client.get("/api/market/x", headers={"X-API-Key": key})
    ).status_code == 200


async def test_unknown_role_is_refused_naming_it(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading")
    response = await identity_gateway.client.put(
        f"/admin/users/{name}/roles",
        json={"roles": ["trading", "superuser"]},
        headers=await bearer(identity_gateway, admin),
    )
    assert response.status_code == 422
    assert "'superuser'" in response.json()["error"]["message"]


async def test_api_key_usage_is_counted_per_key_id(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, key = portfolio.user("trading", api_key=True)
    headers = {"X-API-Key": key, "X-Forwarded-For": "203.0.113.9"}
    for path in ("/api/trading/a", "/api/trading/b", "/api/market/c", "/auth/me"):
        await identity_gateway.client.get(path, headers=headers)
    response = await identity_gateway.client.get(
        "/admin/api-keys/usage", headers=await bearer(identity_gateway, admin)
    )
    assert response.status_code == 200
    assert key not in response.text
    [usage] = [entry for entry in response.json()["keys"] if entry["username"] == name]
    assert usage["key_id"] == sha256_hex(key)[:16]
    assert usage["requests"] == 4
    assert usage["services"] == {"trading": 2, "market": 1}
    assert usage["status_classes"] == {"2xx": 3, "4xx": 1}
    assert usage["last_client"] == "127.0.0.1"  # X-Forwarded-For from an untrusted peer
    assert usage["first_used_at"] <= usage["last_used_at"]


# --- health, keys, docs ---------------------------------------------------------------


async def test_healthz_answers_without_credentials(gateway):
    response = await gateway.client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_readyz_is_200_when_the_identity_service_is_ready(identity_gateway):
    response = await identity_gateway.client.get("/readyz")
    up = {"status": "up", "required": False, "detail": "its /healthz answers 200"}
    assert (response.status_code, response.json()) == (
        200,
        {
            "status": "ready",
            "degraded": [],
            "checks": {
                "identity": {
                    "status": "up",
                    "required": True,
                    "detail": "the portfolio's /readyz answers 200",
                },
                **{
                    name: up
                    for name in (
                        "trading",
                        "market",
                        "strategy",
                        "token",
                        "execution",
                        "monitoring",
                    )
                },
            },
        },
    )


async def test_readyz_is_200_degraded_naming_a_downstream_that_is_down(
    make_settings, keys, portfolio
):
    down = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(portfolio_service_url=portfolio.url, market_service_url=down)
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.get("/readyz")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["degraded"]) == ("degraded", ["market"])
    assert response.json()["checks"]["market"] == {
        "status": "down",
        "required": False,
        "detail": "unreachable (ClientConnectorError)",
    }


async def test_readyz_is_503_when_the_identity_service_is_down(make_settings, keys):
    settings = make_settings(portfolio_service_url=f"http://127.0.0.1:{free_port()}")
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "upstream_unavailable"


async def test_jwks_publishes_the_key_that_verifies_issued_tokens(gateway):
    keys = (await gateway.client.get("/.well-known/jwks.json")).json()["keys"]
    token = gateway.runtime.tokens.issue(username="alice", roles=[]).token
    [jwk] = [key for key in keys if key["kid"] == jwt.get_unverified_header(token)["kid"]]
    public = jwt.PyJWK(jwk).key
    assert (
        jwt.decode(token, public, algorithms=["EdDSA"], audience="legacycointrader-api")["sub"]
        == "alice"
    )


async def test_openapi_documents_the_auth_and_admin_endpoints(gateway):
    paths = (await gateway.client.get("/openapi.json")).json()["paths"]
    for path in (
        "/auth/token",
        "/auth/logout",
        "/auth/me",
        "/auth/password/rotate",
        "/admin/api-keys/usage",
        "/admin/users",
        "/admin/users/{username}/deactivate",
        "/admin/users/{username}/roles",
    ):
        assert path in paths, path


async def test_unknown_path_is_a_json_404(gateway):
    response = await gateway.client.get("/nothing/here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("service", SERVICES, ids=str)
async def test_admin_reaches_every_service_with_a_real_login(identity_gateway, portfolio, service):
    admin, _ = portfolio.user("admin")
    response = await identity_gateway.client.get(
        f"/api/{service.value}/x", headers=await bearer(identity_gateway, admin)
    )
    if service.value == "portfolio":
        # The portfolio URL is the real identity service here; it refuses the unknown path.
        assert response.status_code == 404
    else:
        assert response.status_code == 200
        assert response.json()["caller"]["aud"] == service.value
