"""Spoofed identity headers: a client cannot claim who it is to a downstream service."""

import httpx
import pytest

from shared.assertion import ASSERTION_HEADER, AssertionSigner
from shared.keys import generate_private_key

# Written out, not taken from the gateway's list: a header dropped from that list must
# still be sent here (what reaches a downstream is observed in test_proxy_headers.py).
SPOOFED = [
    "x-user",
    "x-username",
    "x-user-id",
    "x-user-roles",
    "x-roles",
    "x-auth-user",
    "x-authenticated-user",
    "x-forwarded-user",
    "x-remote-user",
    "remote-user",
    "x-auth-method",
    "x-service-token",
]


def forged_assertion(private_key: str, *, service: str = "trading", ttl: int = 60) -> str:
    token, _ = AssertionSigner(private_key, ttl_seconds=ttl).sign(
        username="admin", roles=["admin"], auth_method="password", service=service
    )
    return token


def test_identity_headers_sent_through_the_gateway_never_reach_the_service(stack):
    name, key = stack.user("trading", api_key=True)
    spoofed = {header: "admin" for header in SPOOFED}
    spoofed[ASSERTION_HEADER] = forged_assertion(stack.env["GATEWAY_ASSERTION_PRIVATE_KEY"])
    response = httpx.get(
        stack.gateway_url + "/api/trading/whoami", headers={**spoofed, "X-API-Key": key}
    )
    assert response.status_code == 200
    assert (response.json()["user"], response.json()["roles"]) == (name, ["trading"])


@pytest.mark.parametrize(
    "case", ["attacker key", "another service's audience", "expired", "garbage", "headers only"]
)
@pytest.mark.parametrize("target", ["stub", "portfolio"])
def test_a_service_called_directly_refuses_a_forged_caller(stack, case, target):
    real_key = stack.env["GATEWAY_ASSERTION_PRIVATE_KEY"]
    url, path, audience = {
        "stub": (stack.stub_url, "/orders", "trading"),
        "portfolio": (stack.portfolio_url, "/positions", "portfolio"),
    }[target]
    other_audience = "market" if target == "stub" else "trading"
    assertion = {
        "attacker key": forged_assertion(generate_private_key(), service=audience),
        "another service's audience": forged_assertion(real_key, service=other_audience),
        "expired": forged_assertion(real_key, service=audience, ttl=-120),
        "garbage": "not.a.jwt",
        "headers only": None,
    }[case]
    headers = {header: "admin" for header in SPOOFED}
    if assertion is not None:
        headers[ASSERTION_HEADER] = assertion
    response = httpx.get(url + path, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] in ("invalid_token", "not_authenticated")
