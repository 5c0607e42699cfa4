"""The access stamps every bearer request is checked against: the newest access change per
user, from the identity sync's feed or from a change made through this gateway.

`Authenticator.bearer` consults them with one dict lookup (no extra round trip): an inactive
user's tokens, tokens whose roles are no longer the user's, and tokens obtained with a
password older than the user's current one are refused. A token carries the version
(microseconds) of the password its login proved, so a login that checked the old password
just before a rotation committed is refused even when its token was signed after the
rotation; a login with the new password keeps working, and an API-key rotation ends the old
key, not the user's tokens. A token also carries the feed position of the user's last change
at its login (`acv`): once a deactivation is recorded, a token from before it stays refused
even after the user is reactivated with the same roles and password.

Changes are ordered by their feed position (`seq`), never by their time, and a stamp is kept
for a token lifetime after this gateway learnt of it (its own monotonic clock): nothing here
compares the identity service's clock with this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.api_gateway.accounts import AccessChange, FeedFormatError, IdentityUser
from services.api_gateway.principal import Principal

# The warning belongs to the identity sync, whichever way the change arrived.
logger = logging.getLogger("services.api_gateway.sync")

# How long past its token lifetime a stamp is kept: covers clock skew between the gateway
# replica that signed a token and the one that checks its expiry.
SKEW_MARGIN_SECONDS = 60.0


@dataclass(slots=True)
class _Stamp:
    change: AccessChange
    seen_at: float  # this gateway's monotonic clock
    # The feed position of the newest deactivation recorded: tokens from logins before it
    # stay ended after a reactivation.
    ended_seq: int | None


def _newer(change: AccessChange, held: AccessChange) -> bool:
    if change.seq is not None and held.seq is not None:
        return change.seq > held.seq
    # An identity service that does not number its changes: its own clock orders them.
    return change.changed_at > held.changed_at


def _ends_all(change: AccessChange) -> int | None:
    return change.seq if not change.is_active else None


class AccessStamps:
    """The newest access change per user, kept as long as a token from before it may live."""

    def __init__(self, *, keep_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._keep = keep_seconds
        self._clock = clock
        self._stamps: dict[str, _Stamp] = {}

    def __len__(self) -> int:
        return len(self._stamps)

    def record(self, change: AccessChange) -> bool:
        """Remember a change; False if it is not newer than the one already held."""
        held = self._stamps.get(change.username)
        ended = _ends_all(change)
        if held is not None:
            if held.ended_seq is not None and (ended is None or held.ended_seq > ended):
                ended = held.ended_seq
            if not _newer(change, held.change):
                held.ended_seq = ended
                return False
        self._stamps[change.username] = _Stamp(change, self._clock(), ended)
        return True

    def record_user(self, user: IdentityUser) -> bool:
        """Remember a change made through this gateway from the user it answered with;
        False if the answer cannot be read or the change is not newer."""
        try:
            return self.record(AccessChange.from_user(user))
        except FeedFormatError:
            logger.warning("identity sync: cannot read the changed user; the feed will tell")
            return False

    def refuses(self, principal: Principal) -> bool:
        """Tell whether a bearer token was obtained with access its user no longer has."""
        held = self._stamps.get(principal.username)
        if held is None:
            return False
        stamp = held.change
        if not stamp.is_active or stamp.roles != frozenset(principal.roles):
            return True
        if held.ended_seq is not None and (
            principal.access_version is None or principal.access_version < held.ended_seq
        ):
            return True  # obtained before a deactivation: a reactivation does not revive it
        if stamp.password_version is None:
            return False  # the feed did not say: roles and activity were checked above
        if principal.password_version is not None:
            # No grace: any password other than the current one is an old one.
            return principal.password_version < stamp.password_version
        # A token from before the gateway wrote the version has only `iat`, whole seconds:
        # strict, so one issued in the change's own second is refused too.
        issued_at = principal.issued_at
        return issued_at is None or issued_at * 1_000_000 <= stamp.password_version

    def prune(self) -> None:
        """Forget stamps held longer than any token from before them can live."""
        horizon = self._clock() - self._keep
        self._stamps = {name: held for name, held in self._stamps.items() if held.seen_at > horizon}
