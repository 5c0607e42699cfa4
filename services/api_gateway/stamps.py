"""The access stamps every bearer request is checked against: the newest access change per
user, from the identity sync's feed or from a change made through this gateway.

`Authenticator.bearer` consults them with one dict lookup (no extra round trip): an inactive
user's tokens, tokens whose roles are no longer the user's, and tokens obtained with a
password older than the user's current one are refused. A token carries the version
(microseconds) of the password its login proved, so a login that checked the old password
just before a rotation committed is refused even when its token was signed after the
rotation; a login with the new password keeps working, and an API-key rotation ends the old
key, not the user's tokens.
"""

from __future__ import annotations

import logging

from services.api_gateway.accounts import AccessChange, FeedFormatError, IdentityUser
from services.api_gateway.principal import Principal

# The warning belongs to the identity sync, whichever way the change arrived.
logger = logging.getLogger("services.api_gateway.sync")

# How long past its token lifetime a stamp is kept: covers clock skew between the
# identity service (which stamps) and the gateway (which prunes).
SKEW_MARGIN_SECONDS = 60.0


class AccessStamps:
    """The newest access change per user, kept as long as a token from before it may live."""

    def __init__(self, *, keep_seconds: float) -> None:
        self._keep = keep_seconds
        self._stamps: dict[str, AccessChange] = {}

    def __len__(self) -> int:
        return len(self._stamps)

    def record(self, change: AccessChange) -> bool:
        """Remember a change; False if it is not newer than the one already held."""
        held = self._stamps.get(change.username)
        if held is not None and held.changed_at >= change.changed_at:
            return False
        self._stamps[change.username] = change
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
        stamp = self._stamps.get(principal.username)
        if stamp is None:
            return False
        if not stamp.is_active or stamp.roles != frozenset(principal.roles):
            return True
        if stamp.password_version is None:
            return False  # the feed did not say: roles and activity were checked above
        if principal.password_version is not None:
            # No grace: any password other than the current one is an old one.
            return principal.password_version < stamp.password_version
        # A token from before the gateway wrote the version has only `iat`, whole seconds:
        # strict, so one issued in the change's own second is refused too.
        issued_at = principal.issued_at
        return issued_at is None or issued_at * 1_000_000 <= stamp.password_version

    def prune(self, now: float) -> None:
        """Forget stamps older than any token that could predate them."""
        horizon = now - self._keep
        self._stamps = {
            name: stamp for name, stamp in self._stamps.items() if stamp.changed_at > horizon
        }
