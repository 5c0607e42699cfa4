"""The login throttle: after repeated failures an account is refused for a while, never forever."""

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.portfolio.config import PortfolioSettings

UNKNOWN_NAMES_TRACKED = 10_000


@dataclass(frozen=True, slots=True)
class Throttle:
    """How long an account is refused after consecutive login failures."""

    threshold: int
    base_seconds: float
    max_seconds: float

    @classmethod
    def from_settings(cls, settings: PortfolioSettings) -> "Throttle":
        """Build the throttle the settings describe."""
        return cls(
            threshold=settings.login_throttle_threshold,
            base_seconds=settings.login_throttle_base_seconds,
            max_seconds=settings.login_throttle_max_seconds,
        )

    def delay(self, failures: int) -> timedelta | None:
        """Return the refusal after `failures` consecutive failures; None below the threshold."""
        if failures < self.threshold:
            return None
        doublings = min(failures - self.threshold, 32)
        return timedelta(seconds=min(self.base_seconds * 2**doublings, self.max_seconds))


@dataclass(slots=True)
class _Attempts:
    failures: int = 0
    until: datetime | None = None


class UnknownNameThrottle:
    """Throttle failures against names that have no account, exactly like real accounts.

    Otherwise a throttled answer would reveal that a username exists. Kept in memory and
    bounded: it only has to look the same as the per-account throttle to an attacker.
    """

    def __init__(self, throttle: Throttle, capacity: int = UNKNOWN_NAMES_TRACKED) -> None:
        self._throttle = throttle
        self._capacity = capacity
        self._attempts: OrderedDict[str, _Attempts] = OrderedDict()

    def reserve(self, name: str, now: datetime) -> datetime | None:
        """Count one attempt against the name before its password is checked, or return
        until when the name is refused (and count nothing).

        No await between the check and the count: concurrent attempts on the event loop
        each see the ones before them. The refusal the attempt would earn if it failed
        starts now, so attempts still being checked cannot slip past it.
        """
        attempts = self._attempts.pop(name, None) or _Attempts()
        if attempts.until is not None and now < attempts.until:
            self._attempts[name] = attempts
            return attempts.until
        attempts.failures += 1
        delay = self._throttle.delay(attempts.failures)
        attempts.until = now + delay if delay is not None else None
        self._attempts[name] = attempts
        while len(self._attempts) > self._capacity:
            self._attempts.popitem(last=False)
        return None
