"""Anonymous access: nothing but login and health answers without credentials, anywhere.

The routes are read from each real process's own OpenAPI document, so a new endpoint is
covered the day it is added.
"""

import re

import httpx
import pytest

from shared.roles import SERVICES
from tests.security.conftest import PASSWORD

METHODS_WITH_BODY = {"post", "put", "patch"}
# Public on purpose: logging in, rotating an expired password, health, the public keys.
GATEWAY_PUBLIC = {
    ("post", "/auth/token"),
    ("post", "/auth/password/rotate"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/.well-known/jwks.json"),
}
SERVICE_PUBLIC = {("get", "/healthz"), ("get", "/readyz")}
# The second factor's endpoints whose credential is a bearer token or a login/enrolment
# challenge in the body: an empty body fails validation first (422), so each is called with a
# well-formed body. Without a challenge they must want a bearer token; with a made-up
# challenge they must refuse it.
FAKE_CHALLENGE = "c" * 43
CHALLENGE_BODIES: dict[tuple[str, str], dict[str, object]] = {
    ("post", "/auth/mfa/totp/confirm"): {"factor_id": 1, "code": "123456"},
    ("post", "/auth/mfa/passkey/register"): {"handle": FAKE_CHALLENGE, "credential": {}},
}
CHALLENGE_ONLY = {("post", "/auth/mfa/passkey/options")}


def _placeholder(match: re.Match[str]) -> str:
    return "1" if match.group(0).endswith("_id}") else "someone"


def operations(
    base_url: str, document: str = "/openapi.json", headers: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    paths = httpx.get(base_url + document, headers=headers).json()["paths"]
    return [
        # A row id (`{factor_id}`) must be a number to reach the credential check at all.
        (method, re.sub(r"\{[^}]+\}", _placeholder, path))
        for path, methods in paths.items()
        for method in methods
    ]


def call(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    if method in METHODS_WITH_BODY:
        kwargs.setdefault("json", {})
    return client.request(method.upper(), path, **kwargs)


def test_every_gateway_endpoint_but_login_and_health_needs_credentials(stack):
    private = [
        op
        for op in operations(stack.gateway_url)
        if op not in GATEWAY_PUBLIC and op not in CHALLENGE_ONLY
    ]
    assert ("get", "/admin/users") in private
    assert set(CHALLENGE_BODIES) <= set(private)
    with httpx.Client(base_url=stack.gateway_url) as client:
        for method, path in private:
            response = call(client, method, path, json=CHALLENGE_BODIES.get((method, path), {}))
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "not_authenticated"
        for method, path in [*CHALLENGE_BODIES, *CHALLENGE_ONLY]:
            body = {**CHALLENGE_BODIES.get((method, path), {}), "challenge": FAKE_CHALLENGE}
            response = call(client, method, path, json=body)
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "invalid_credentials"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_every_service_behind_the_gateway_needs_credentials(stack, method):
    with httpx.Client(base_url=stack.gateway_url) as client:
        for service in SERVICES:
            response = client.request(method, f"/api/{service.value}/anything")
            assert response.status_code == 401, (service, method)


def test_admin_endpoints_refuse_a_caller_without_the_admin_role(stack):
    name, key = stack.user("trading", "portfolio", "market", api_key=True)
    token = httpx.post(
        stack.gateway_url + "/auth/token", json={"username": name, "password": PASSWORD}
    ).json()["access_token"]
    admin = [op for op in operations(stack.gateway_url) if op[1].startswith("/admin/")]
    assert len(admin) >= 4
    with httpx.Client(base_url=stack.gateway_url) as client:
        for credentials in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": key}):
            for method, path in admin:
                response = call(client, method, path, headers=credentials)
                assert response.status_code == 403, (method, path, response.text)
                assert response.json()["error"]["code"] == "forbidden"


def test_the_identity_services_internal_api_is_unreachable_through_the_gateway(stack):
    _, key = stack.user("admin", api_key=True)
    for path in (
        "/api/portfolio/internal/identity/users",
        "/api/portfolio/Internal/identity/users",
    ):
        response = httpx.get(stack.gateway_url + path, headers={"X-API-Key": key})
        assert response.status_code == 404, path


def test_every_portfolio_endpoint_but_health_needs_a_service_token_or_an_assertion(stack):
    # The internal identity API has its own document, behind the service token.
    token = {"X-Service-Token": stack.env["IDENTITY_SERVICE_TOKEN"]}
    internal = operations(stack.portfolio_url, "/internal/identity/openapi.json", token)
    documented = operations(stack.portfolio_url) + internal
    private = [op for op in documented if op not in SERVICE_PUBLIC]
    assert any(path.startswith("/internal/") for _, path in private)
    assert any(not path.startswith("/internal/") for _, path in private)
    with httpx.Client(base_url=stack.portfolio_url) as client:
        for method, path in private:
            for headers in ({}, {"X-Service-Token": "changeme"}, {"X-User": "admin"}):
                response = call(client, method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_a_stub_service_answers_nothing_but_health_without_an_assertion(stack, method):
    for path in ("/", "/orders", "/openapi.json", "/docs", "/internal/anything"):
        response = httpx.request(method, stack.stub_url + path)
        assert response.status_code == 401, (method, path)
