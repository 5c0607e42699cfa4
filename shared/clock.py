"""The clocks services read, injectable so tests can move time: wall time as an aware UTC
`datetime` (stored and compared with database rows) or as epoch seconds (tokens, caches)."""

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]
Seconds = Callable[[], float]


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def epoch_seconds() -> float:
    """Return the current wall time in seconds since the epoch."""
    return time.time()
