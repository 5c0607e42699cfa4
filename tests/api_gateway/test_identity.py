"""How the identity service's refusals become the gateway's answers."""

import httpx
import pytest

from services.api_gateway.errors import (
    IdentityBusy,
    TooManyAttempts,
    UpstreamUnavailable,
    status_for,
)
from services.api_gateway.identity import _identity_error


def answer(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": "from the identity service"}}
    return httpx.Response(status, json=body, headers=headers)


def test_a_busy_identity_service_is_passed_on_as_503_identity_busy_with_retry_after():
    response = answer(503, "identity_busy", **{"Retry-After": "2"})
    error = _identity_error(response, response.json())
    assert isinstance(error, IdentityBusy)
    assert status_for(error) == 503
    assert error.code == "identity_busy"
    assert error.headers() == {"Retry-After": "2"}
    assert error.extra == {"retry_after": 2}


@pytest.mark.parametrize(
    ("sent", "kept"), [(None, "1"), ("soon", "1"), ("inf", "1"), ("9999", "60")]
)
def test_a_busy_answer_gets_a_short_finite_retry_after_whatever_was_sent(sent, kept):
    response = answer(503, "identity_busy", **({"Retry-After": sent} if sent else {}))
    assert _identity_error(response, response.json()).headers() == {"Retry-After": kept}


def test_another_503_is_still_upstream_unavailable():
    response = answer(503, "service_unavailable")
    assert isinstance(_identity_error(response, response.json()), UpstreamUnavailable)


@pytest.mark.parametrize(
    ("body_retry", "header", "kept"),
    [
        (None, "30", "30"),
        ("inf", None, "60"),
        ("nan", None, "60"),
        (None, "inf", "60"),
        ("1e300", None, "86400"),
        ("-5", None, "1"),
        ("soon", None, "60"),
    ],
)
def test_a_throttled_answer_gets_a_finite_retry_after_whatever_was_sent(body_retry, header, kept):
    body = {"error": {"code": "too_many_attempts", "message": "slow down"}}
    if body_retry is not None:
        body["error"]["retry_after"] = body_retry
    response = httpx.Response(429, json=body, headers={"Retry-After": header} if header else {})
    error = _identity_error(response, response.json())
    assert isinstance(error, TooManyAttempts)
    assert error.headers() == {"Retry-After": kept}
