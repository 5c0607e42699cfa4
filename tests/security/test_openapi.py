"""API documents: the one the gateway proxies to portfolio users names no internal route."""

import httpx

from tests.security.conftest import PASSWORD

INTERNAL_DOCUMENT = "/internal/identity/openapi.json"


def bearer(stack, name: str) -> dict[str, str]:
    token = httpx.post(
        stack.gateway_url + "/auth/token", json={"username": name, "password": PASSWORD}
    ).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def test_the_portfolio_document_served_through_the_gateway_names_no_internal_route(stack):
    name, _ = stack.user("portfolio")
    response = httpx.get(
        stack.gateway_url + "/api/portfolio/openapi.json", headers=bearer(stack, name)
    )
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/trades" in paths
    assert not [path for path in paths if path.lower().startswith("/internal")], sorted(paths)
    for word in ("internal", "api-keys/verify", "X-Service-Token", "password/rotate"):
        assert word.lower() not in response.text.lower(), word


def test_the_internal_document_needs_the_service_token_and_is_never_proxied(stack):
    _, key = stack.user("admin", api_key=True)
    through_gateway = httpx.get(
        stack.gateway_url + "/api/portfolio" + INTERNAL_DOCUMENT, headers={"X-API-Key": key or ""}
    )
    assert through_gateway.status_code == 404
    with httpx.Client(base_url=stack.portfolio_url) as client:
        for guess in ({}, {"X-Service-Token": "changeme"}):
            assert client.get(INTERNAL_DOCUMENT, headers=guess).status_code == 401
        token = {"X-Service-Token": stack.env["IDENTITY_SERVICE_TOKEN"]}
        document = client.get(INTERNAL_DOCUMENT, headers=token)
    assert document.status_code == 200
    assert "/internal/identity/api-keys/verify" in document.json()["paths"]
