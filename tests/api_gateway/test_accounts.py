"""The identity service's answers as the gateway reads them."""

import pytest

from services.api_gateway.accounts import (
    AccessChange,
    AccessChangePage,
    FeedFormatError,
    IdentityUser,
)

ENTRY = {
    "seq": 7,
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
            "access_seq": 7,
        }
    )
    from_user = AccessChange.from_user(user)
    assert from_user == AccessChange.from_json(ENTRY)
    assert from_user.password_version == user.password_version == 1736942400_000001
    assert from_user.seq == 7


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
        {k: v for k, v in ENTRY.items() if k != "seq"},
        {**ENTRY, "seq": "7"},
        {**ENTRY, "seq": 0},
        {**ENTRY, "seq": True},
    ],
    ids=[
        "username",
        "is_active",
        "roles",
        "naive-time",
        "bad-time",
        "no-time",
        "no-seq",
        "text-seq",
        "zero-seq",
        "bool-seq",
    ],
)
def test_a_malformed_feed_entry_is_refused(entry):
    with pytest.raises(FeedFormatError):
        AccessChange.from_json(entry)


def test_a_change_page_reads_its_entries_and_keeps_the_cursor_as_sent():
    page = AccessChangePage.from_json({"changes": [ENTRY], "cursor": 7, "more": True})
    assert page == AccessChangePage(changes=[AccessChange.from_json(ENTRY)], cursor=7, more=True)
    assert not AccessChangePage.from_json({"changes": [], "cursor": 0}).more


@pytest.mark.parametrize(
    "body",
    [
        {"changes": []},
        {"changes": [], "cursor": "7"},
        {"changes": [], "cursor": -1},
        {"changes": [], "until": "2025-01-15T12:00:01+00:00"},
        {"cursor": 7},
        {"changes": ["alice"], "cursor": 7},
    ],
    ids=["no-cursor", "text-cursor", "negative-cursor", "a-time", "no-changes", "not-an-object"],
)
def test_a_malformed_change_page_is_refused(body):
    with pytest.raises(FeedFormatError):
        AccessChangePage.from_json(body)
