"""The identity client: typed answers from an injected HTTP client, and how the identity
service's refusals become the gateway's answers."""

import json
from collections.abc import Callable

import httpx
import pytest

from services.api_gateway.accounts import (
    AccessChange,
    AccessChangePage,
    ApiKeyVerification,
    FeedFormatError,
    IdentityUser,
)
from services.api_gateway.errors import (
    IdentityBusy,
    InvalidCredentials,
    TooManyAttempts,
    UpstreamUnavailable,
    identity_error,
    status_for,
)
from services.api_gateway.identity import IdentityClient

USER = {
    "username": "alice",
    "roles": ["trading"],
    "is_active": True,
    "must_change_password": False,
    "created_at": "2025-01-01T00:00:00+00:00",
    "updated_at": "2025-01-15T12:00:00.000002+00:00",
    "last_login_at": None,
    "password_changed_at": "2025-01-15T12:00:00.000001+00:00",
    "password_expires_at": None,
    "api_key_id": "0123456789abcdef",
    "api_key_last_rotated_at": None,
    "access_changed_at": "2025-01-15T12:00:00.000002+00:00",
}
CHANGE = {**USER, "changed_at": USER["access_changed_at"], "seq": 3}


def identity(answer: Callable[[httpx.Request], httpx.Response]) -> IdentityClient:
    """An identity client whose HTTP client answers with `answer`, no network."""
    transport = httpx.MockTransport(answer)
    return IdentityClient(httpx.AsyncClient(transport=transport, base_url="http://identity"))


def the_identity_service(request: httpx.Request) -> httpx.Response:
    """Answer like the identity service's internal API."""
    path = request.url.path
    if path == "/internal/identity/api-keys/verify":
        return httpx.Response(200, json={"user": USER, "key_id": USER["api_key_id"]})
    if path == "/internal/identity/users":
        return httpx.Response(200, json={"users": [USER]})
    if path == "/internal/identity/changes":
        return httpx.Response(200, json={"changes": [CHANGE], "cursor": 3, "more": False})
    return httpx.Response(200, json={"user": USER})


async def test_every_answer_is_a_typed_model():
    client = identity(the_identity_service)
    user = IdentityUser.model_validate(USER)
    assert await client.authenticate("alice", "pw") == user
    assert await client.rotate_password("alice", "pw", "new pw") == user
    assert await client.deactivate_user("alice") == user
    assert await client.set_roles("alice", ["trading"]) == user
    assert await client.list_users() == [user]
    assert await client.verify_api_key("k") == ApiKeyVerification(
        user=user, key_id="0123456789abcdef"
    )
    assert await client.access_changes(None) == AccessChangePage(
        changes=[AccessChange.from_json(CHANGE)], cursor=3
    )
    assert user.password_version == 1736942400_000001


async def test_the_calls_go_where_the_identity_service_expects_them():
    seen: list[tuple[str, str, object]] = []

    def record(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, str(request.url), body))
        return the_identity_service(request)

    client = identity(record)
    await client.set_roles("a/b c", ["market"])
    await client.access_changes(41)
    await client.access_changes(None, window_seconds=960)
    await client.access_changes(None)
    assert seen == [
        ("PUT", "http://identity/internal/identity/users/a%2Fb%20c/roles", {"roles": ["market"]}),
        ("GET", "http://identity/internal/identity/changes?after=41", None),
        ("GET", "http://identity/internal/identity/changes?window=960.000", None),
        ("GET", "http://identity/internal/identity/changes", None),
    ]


@pytest.mark.parametrize(
    "user", [{"roles": ["trading"], "is_active": True}, {**USER, "roles": "admin"}, None]
)
async def test_a_user_the_gateway_cannot_read_is_an_upstream_error(user):
    client = identity(lambda _: httpx.Response(200, json={"user": user}))
    with pytest.raises(UpstreamUnavailable, match="cannot read") as caught:
        await client.authenticate("alice", "pw")
    assert status_for(caught.value) == 502


async def test_a_change_page_the_gateway_cannot_read_is_a_feed_format_error():
    client = identity(lambda _: httpx.Response(200, json={"changes": "none", "cursor": 3}))
    with pytest.raises(FeedFormatError):
        await client.access_changes(None)


async def test_an_inactive_account_is_answered_like_an_unknown_api_key():
    body = {"error": {"code": "account_inactive", "message": "the account is inactive"}}
    client = identity(lambda _: httpx.Response(403, json=body))
    with pytest.raises(InvalidCredentials, match=r"^invalid credentials$"):
        await client.verify_api_key("k")


def answer(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": "from the identity service"}}
    return httpx.Response(status, json=body, headers=headers)


def test_a_busy_identity_service_is_passed_on_as_503_identity_busy_with_retry_after():
    response = answer(503, "identity_busy", **{"Retry-After": "2"})
    error = identity_error(response, response.json())
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
    assert identity_error(response, response.json()).headers() == {"Retry-After": kept}


def test_another_503_is_still_upstream_unavailable():
    response = answer(503, "service_unavailable")
    assert isinstance(identity_error(response, response.json()), UpstreamUnavailable)


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
    error = identity_error(response, response.json())
    assert isinstance(error, TooManyAttempts)
    assert error.headers() == {"Retry-After": kept}
