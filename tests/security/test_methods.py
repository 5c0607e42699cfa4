"""Methods the gateway does not serve are answered by the gateway, never forwarded."""

import httpx
import pytest

ALLOWED = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "MKCOL"])
@pytest.mark.parametrize("authenticated", [True, False])
def test_the_gateway_answers_405_for_a_method_outside_its_allow_list(stack, method, authenticated):
    _, key = stack.user("trading", api_key=True)
    headers = {"X-API-Key": key or ""} if authenticated else {}
    response = httpx.request(method, stack.gateway_url + "/api/trading/orders", headers=headers)
    assert response.status_code == 405, response.text
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == ALLOWED
    # The stub echoes any method that reaches it.
    assert "service" not in response.json()


@pytest.mark.parametrize("method", ALLOWED.split(", "))
def test_every_allowed_method_is_still_forwarded(stack, method):
    _, key = stack.user("trading", api_key=True)
    response = httpx.request(
        method, stack.gateway_url + "/api/trading/orders", headers={"X-API-Key": key or ""}
    )
    assert response.status_code == 200, response.text
    if method != "HEAD":
        assert response.json()["method"] == method
