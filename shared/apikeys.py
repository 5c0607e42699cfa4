"""API keys as every service sees them: stored, cached and looked up by their SHA-256 digest,
shown by a short public id, never in clear; and how two counts of one key's usage add up
(`merge_usage`), the same in the gateway's memory and in the portfolio's stored totals."""

import hashlib
from datetime import datetime
from typing import Protocol, TypeVar

KEY_ID_LENGTH = 16

# The gateway counts in unix seconds, the portfolio stores datetimes.
Stamp = TypeVar("Stamp", float, datetime)


def digest(api_key: str) -> str:
    """Return the SHA-256 hex digest an API key is stored, cached and looked up by."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id(key_digest: str) -> str:
    """Return the public id of an API key: the first 16 hex characters of its digest."""
    return key_digest[:KEY_ID_LENGTH]


class KeyUsageCount(Protocol[Stamp]):
    """Usage of one API key: totals, or the counts of one gateway since some moment."""

    username: str
    requests: int
    services: dict[str, int]
    status_classes: dict[str, int]
    first_used_at: Stamp
    last_used_at: Stamp
    last_client: str | None


def merge_usage(total: KeyUsageCount[Stamp], count: KeyUsageCount[Stamp]) -> None:
    """Add `count` to `total`: counts summed, the earlier first use, and the later last use
    with its client and username (on a tie, the added count's)."""
    total.requests += count.requests
    # New dicts, never changed in place: a JSON column is only written back when reassigned.
    total.services = _summed(total.services, count.services)
    total.status_classes = _summed(total.status_classes, count.status_classes)
    total.first_used_at = min(total.first_used_at, count.first_used_at)
    if count.last_used_at >= total.last_used_at:
        total.last_used_at = count.last_used_at
        total.last_client = count.last_client
        total.username = count.username


def _summed(total: dict[str, int], added: dict[str, int]) -> dict[str, int]:
    return {name: total.get(name, 0) + added.get(name, 0) for name in {*total, *added}}
