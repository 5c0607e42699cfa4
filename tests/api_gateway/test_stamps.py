"""The access stamps: which bearer tokens a change to their user's access ends."""

import pytest

from services.api_gateway.accounts import AccessChange, IdentityUser
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.stamps import AccessStamps


def principal(
    roles=("trading",),
    issued_at: float | None = 1000.0,
    version: int | None = None,
    access: int | None = None,
) -> Principal:
    return Principal(
        username="alice",
        roles=tuple(roles),
        auth_method=AuthMethod.PASSWORD,
        jti="j",
        expires_at=2000.0,
        issued_at=issued_at,
        password_version=version,
        access_version=access,
    )


def change(
    *, active=True, roles=("trading",), at=1000.5, password_at=None, seq=None
) -> AccessChange:
    password_at = at if password_at is None else password_at
    return AccessChange(
        username="alice",
        is_active=active,
        roles=frozenset(roles),
        changed_at=at,
        password_version=round(password_at * 1_000_000),
        seq=seq,
    )


class MonotonicClock:
    """This gateway's monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


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
            "access_seq": 9,
        }
    )
    feed_entry = {
        "seq": 9,
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


def test_changes_are_ordered_by_their_feed_position_not_their_time():
    # The later change (seq 6) was stamped earlier: it waited on a lock before committing.
    stamps = AccessStamps(keep_seconds=900)
    assert stamps.record(change(at=2000.0, roles=("trading", "market"), seq=5))
    assert stamps.record(change(at=1000.0, roles=("market",), seq=6))
    assert not stamps.record(change(at=3000.0, roles=("admin",), seq=5))
    assert stamps.refuses(principal(roles=("trading", "market"), version=10**15, access=5))
    assert not stamps.refuses(principal(roles=("market",), version=10**15, access=6))


def test_a_token_from_before_a_deactivation_stays_refused_after_a_reactivation():
    stamps = AccessStamps(keep_seconds=900)
    old = principal(version=1_000_000_000, access=3)
    assert stamps.record(change(active=False, password_at=1000.0, seq=4))
    assert stamps.refuses(old)
    # Reactivated with the same roles and password: the old token must not come back...
    assert stamps.record(change(active=True, password_at=1000.0, seq=5))
    assert stamps.refuses(old)
    assert stamps.refuses(principal(version=1_000_000_000, access=None))
    # ...while a login after the reactivation works.
    assert not stamps.refuses(principal(version=1_000_000_000, access=5))
    # A later role change keeps the deactivation's mark.
    assert stamps.record(change(roles=("market",), password_at=1000.0, seq=6))
    assert stamps.refuses(principal(roles=("market",), version=1_000_000_000, access=3))
    assert not stamps.refuses(principal(roles=("market",), version=1_000_000_000, access=6))


def test_a_deactivation_seen_after_its_reactivation_still_marks_older_tokens():
    # Made through this gateway (seq 5 recorded first), then the feed's older entry (seq 4).
    stamps = AccessStamps(keep_seconds=900)
    assert stamps.record(change(active=True, password_at=1000.0, seq=5))
    assert not stamps.record(change(active=False, password_at=1000.0, seq=4))
    assert stamps.refuses(principal(version=1_000_000_000, access=3))
    assert not stamps.refuses(principal(version=1_000_000_000, access=5))


def test_stamps_are_kept_a_token_lifetime_after_this_gateway_learnt_of_them():
    # The identity service's clock is an hour behind: its stamp says nothing about when to
    # forget; this gateway's own clock from the moment it recorded the change does.
    clock = MonotonicClock()
    stamps = AccessStamps(keep_seconds=900, clock=clock)
    stamps.record(change(at=1000.0 - 3600, active=False, seq=1))
    clock.now += 899
    stamps.prune()
    assert len(stamps) == 1
    assert stamps.refuses(principal(issued_at=5000.0))
    clock.now += 2
    stamps.prune()
    assert len(stamps) == 0
