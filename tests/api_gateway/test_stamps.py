"""The access stamps: which bearer tokens a change to their user's access ends."""

import pytest

from services.api_gateway.accounts import AccessChange, IdentityUser
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.stamps import AccessStamps


def principal(
    roles=("trading",), issued_at: float | None = 1000.0, version: int | None = None
) -> Principal:
    return Principal(
        username="alice",
        roles=tuple(roles),
        auth_method=AuthMethod.PASSWORD,
        jti="j",
        expires_at=2000.0,
        issued_at=issued_at,
        password_version=version,
    )


def change(*, active=True, roles=("trading",), at=1000.5, password_at=None) -> AccessChange:
    password_at = at if password_at is None else password_at
    return AccessChange(
        username="alice",
        is_active=active,
        roles=frozenset(roles),
        changed_at=at,
        password_version=round(password_at * 1_000_000),
    )


@pytest.mark.parametrize(
    ("stamp", "token", "refused_"),
    [
        (change(active=False), principal(issued_at=5000.0), True),
        (change(roles=("admin",)), principal(issued_at=5000.0), True),
        # Tokens carrying the version of the password their login proved.
        (change(at=1000.5), principal(issued_at=1001.0, version=1000_499_999), True),
        (change(at=1000.5), principal(issued_at=1000.0, version=1000_500_000), False),
        (change(at=1000.5), principal(issued_at=1001.0, version=1000_600_000), False),
        # Tokens from before the version claim: whole-second `iat`, compared strictly.
        (change(at=1001.5), principal(issued_at=1000.0), True),
        (change(at=1000.5), principal(issued_at=1000.0), True),
        (change(at=1000.0), principal(issued_at=1000.0), True),
        (change(at=1000.5), principal(issued_at=1001.0), False),
        (change(), principal(issued_at=None), True),
        # An API-key rotation: the password changed long before the token was issued.
        (change(at=5000.5, password_at=10.0), principal(issued_at=1000.0), False),
        (change(at=5000.5, password_at=10.0), principal(version=10_000_000), False),
    ],
    ids=[
        "inactive",
        "roles-changed",
        "older-password-signed-after-the-change",
        "the-current-password",
        "a-newer-password-than-the-feed-knows",
        "legacy-issued-before",
        "legacy-same-second",
        "legacy-same-whole-second",
        "legacy-issued-after",
        "no-iat",
        "key-rotation",
        "key-rotation-versioned",
    ],
)
def test_stamps_refuse_only_tokens_the_change_must_end(stamp, token, refused_):
    stamps = AccessStamps(keep_seconds=900)
    stamps.record(stamp)
    assert stamps.refuses(token) is refused_


def test_a_change_answered_by_the_identity_service_is_stamped_like_the_feed_entry():
    user = IdentityUser.model_validate(
        {
            "username": "alice",
            "is_active": True,
            "roles": ["trading"],
            "updated_at": "2025-01-15T12:00:00.000002+00:00",
            "access_changed_at": "2025-01-15T12:00:00.000002+00:00",
            "password_changed_at": "2025-01-15T12:00:00.000001+00:00",
        }
    )
    feed_entry = {
        "username": "alice",
        "is_active": True,
        "roles": ["trading"],
        "changed_at": "2025-01-15T12:00:00.000002+00:00",
        "password_changed_at": "2025-01-15T12:00:00.000001+00:00",
    }
    stamps = AccessStamps(keep_seconds=900)
    assert stamps.record_user(user)
    assert not stamps.record(AccessChange.from_json(feed_entry))  # the feed repeats it


def test_a_changed_user_without_a_change_time_is_not_stamped(caplog):
    user = IdentityUser(username="alice", roles=("trading",), is_active=False)
    assert not AccessStamps(keep_seconds=900).record_user(user)
    assert "the feed will tell" in caplog.text


def test_a_user_without_a_stamp_is_not_refused():
    assert AccessStamps(keep_seconds=900).refuses(principal()) is False


def test_a_repeated_or_older_change_is_not_recorded_again():
    stamps = AccessStamps(keep_seconds=900)
    assert stamps.record(change(at=10.0))
    assert not stamps.record(change(at=10.0))
    assert not stamps.record(change(at=9.0, active=False))
    assert not stamps.refuses(principal(issued_at=50.0))


def test_stamps_are_forgotten_once_every_older_token_has_expired():
    stamps = AccessStamps(keep_seconds=900)
    stamps.record(change(at=1000.0))
    stamps.prune(1000.0 + 899)
    assert len(stamps) == 1
    stamps.prune(1000.0 + 901)
    assert len(stamps) == 0
