"""The identity service's answers as the gateway reads them."""

import pytest

from services.api_gateway.accounts import (
    AccessChange,
    AccessChangePage,
    FeedFormatError,
    IdentityUser,
)

ENTRY = {
    "username": "alice",
    "is_active": True,
    "roles": ["trading"],
    "changed_at": "2025-01-15T12:00:00.000002+00:00",
    "password_changed_at": "2025-01-15T12:00:00.000001+00:00",
}


def test_a_changed_user_reads_as_the_feed_entry_that_will_report_it():
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
    from_user = AccessChange.from_user(user)
    assert from_user == AccessChange.from_json(ENTRY)
    assert from_user.password_version == user.password_version == 1736942400_000001


@pytest.mark.parametrize("changed_at", [None, "2025-01-15T12:00:00"])
def test_a_password_time_without_an_offset_gives_no_version(changed_at):
    user = IdentityUser(username="alice", roles=(), is_active=True, password_changed_at=changed_at)
    assert user.password_version is None


@pytest.mark.parametrize(
    "entry",
    [
        {**ENTRY, "username": 7},
        {**ENTRY, "is_active": "yes"},
        {**ENTRY, "roles": "trading"},
        {**ENTRY, "changed_at": "2025-01-15T12:00:00"},
        {**ENTRY, "changed_at": "yesterday"},
        {k: v for k, v in ENTRY.items() if k != "changed_at"},
    ],
    ids=["username", "is_active", "roles", "naive-time", "bad-time", "no-time"],
)
def test_a_malformed_feed_entry_is_refused(entry):
    with pytest.raises(FeedFormatError):
        AccessChange.from_json(entry)


def test_a_change_page_reads_its_entries_and_keeps_until_as_sent():
    until = "2025-01-15T12:00:01.000000+00:00"
    page = AccessChangePage.from_json({"changes": [ENTRY], "until": until, "more": True})
    assert page == AccessChangePage(changes=[AccessChange.from_json(ENTRY)], until=until, more=True)
    assert not AccessChangePage.from_json({"changes": [], "until": until}).more


@pytest.mark.parametrize(
    "body",
    [
        {"changes": []},
        {"changes": [], "until": "soon"},
        {"until": "2025-01-15T12:00:01+00:00"},
        {"changes": ["alice"], "until": "2025-01-15T12:00:01+00:00"},
    ],
    ids=["no-until", "bad-until", "no-changes", "entry-not-an-object"],
)
def test_a_malformed_change_page_is_refused(body):
    with pytest.raises(FeedFormatError):
        AccessChangePage.from_json(body)
