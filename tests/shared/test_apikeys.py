"""`shared.apikeys`: digests, public ids, and how two counts of one key's usage add up."""

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.apikeys import digest, key_id, merge_usage


@dataclass
class Count:
    username: str
    requests: int
    first_used_at: float | datetime
    last_used_at: float | datetime
    last_client: str | None = None
    services: dict[str, int] = field(default_factory=dict)
    status_classes: dict[str, int] = field(default_factory=dict)


def test_a_key_is_looked_up_by_its_digest_and_shown_by_its_first_16_characters():
    key_digest = digest("lct_secret")
    assert len(key_digest) == 64
    assert key_id(key_digest) == key_digest[:16]


T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("at", "later"),
    [(1_000.0, 1_060.0), (T0, T0 + timedelta(minutes=1))],
    ids=["unix-seconds", "datetimes"],
)
def test_counts_are_summed_and_the_later_use_names_the_client(at, later):
    total = Count("alice", 3, at, at, "192.0.2.1", {"trading": 3}, {"2xx": 2, "4xx": 1})
    count = Count("alice2", 2, later, later, "192.0.2.2", {"trading": 1, "market": 1}, {"2xx": 2})
    services, statuses = total.services, count.services
    merge_usage(total, count)
    assert total == Count(
        "alice2", 5, at, later, "192.0.2.2", {"trading": 4, "market": 1}, {"2xx": 4, "4xx": 1}
    )
    # New dicts (a JSON column is written back only when reassigned); the count is untouched.
    assert total.services is not services
    assert statuses == {"trading": 1, "market": 1}


def test_an_earlier_count_moves_the_first_use_back_but_keeps_the_last_client():
    total = Count("alice", 1, 1_000.0, 1_000.0, "192.0.2.1")
    merge_usage(total, Count("old-name", 4, 500.0, 900.0, "192.0.2.9", {"market": 4}))
    assert total == Count("alice", 5, 500.0, 1_000.0, "192.0.2.1", {"market": 4})


def test_on_a_tie_the_added_count_names_the_client():
    total = Count("alice", 1, 1_000.0, 1_000.0, "192.0.2.1")
    merge_usage(total, Count("alice", 1, 1_000.0, 1_000.0, "192.0.2.2"))
    assert (total.requests, total.last_client) == (2, "192.0.2.2")


def test_a_count_added_to_a_blank_at_its_times_is_copied_exactly():
    count = Count("bob", 7, 10.0, 20.0, None, {"trading": 7}, {"2xx": 6, "5xx": 1})
    blank = Count("", 0, count.first_used_at, count.last_used_at, "stale")
    merge_usage(blank, count)
    assert blank == replace(count)
