"""Follow the identity service's change feed, so changes made there end live access here.

A deactivation, role change or rotation made straight in the identity store (the
operations guide's `PortfolioIdentityService`) never passes through the gateway. Every
replica polls `GET /internal/identity/changes` in the background and, per changed user:

- remembers the change in `AccessStamps`, which `Authenticator.bearer` consults with one
  dict lookup (no extra round trip): an inactive user's tokens, tokens whose roles are no
  longer the user's, and tokens obtained with a password older than the user's current
  one are refused. A token carries the version (microseconds) of the password its login
  proved, so a login that checked the old password just before a rotation committed is
  refused even when its token was signed after the rotation; a login with the new
  password keeps working, and an API-key rotation ends the old key, not the user's tokens.
- drops the user's cached API-key verifications in the shared state, so the next request
  asks the identity service again (a rotated key or an inactive account is refused).
- for a deactivation also revokes every tracked token in the shared state
  (`Authenticator.forget_user`), which outlives this replica's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.api_gateway.auth import Authenticator
from services.api_gateway.errors import GatewayError
from services.api_gateway.identity import IdentityClient
from services.api_gateway.principal import Principal
from services.api_gateway.state import GatewayState
from services.api_gateway.tokens import epoch_micros

logger = logging.getLogger("services.api_gateway.sync")

# How long past its token lifetime a stamp is kept: covers clock skew between the
# identity service (which stamps) and the gateway (which prunes).
SKEW_MARGIN_SECONDS = 60.0
# Pages read in one tick at most; the rest follows at the next tick.
MAX_PAGES_PER_TICK = 20


class FeedFormatError(ValueError):
    """The change feed answered something that is not a change page."""


@dataclass(frozen=True, slots=True)
class AccessChange:
    """One entry of the change feed."""

    username: str
    is_active: bool
    roles: frozenset[str]
    changed_at: float  # epoch seconds, the identity service's clock
    # The user's password version (`password_changed_at` in microseconds since the epoch).
    password_version: int | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> AccessChange:
        """Read one feed entry, or raise `FeedFormatError`."""
        return cls._read(entry, "changed_at")

    @classmethod
    def from_user(cls, user: Mapping[str, Any]) -> AccessChange:
        """Read the user the identity service answered a change with, or raise
        `FeedFormatError`: the change as the feed will report it."""
        stamp = "access_changed_at" if user.get("access_changed_at") else "updated_at"
        return cls._read(user, stamp)

    @classmethod
    def _read(cls, entry: Mapping[str, Any], stamp: str) -> AccessChange:
        try:
            username = entry["username"]
            is_active = entry["is_active"]
            roles = entry["roles"]
            changed_at = datetime.fromisoformat(str(entry[stamp]))
            password_at = entry.get("password_changed_at")
            password_changed_at = (
                None if password_at is None else datetime.fromisoformat(str(password_at))
            )
        except (KeyError, TypeError, ValueError):
            raise FeedFormatError("a change entry lacks a field or has a bad one") from None
        if (
            not isinstance(username, str)
            or not isinstance(is_active, bool)
            or not isinstance(roles, list)
            or changed_at.tzinfo is None
        ):
            raise FeedFormatError("a change entry has a field of the wrong type")
        return cls(
            username=username,
            is_active=is_active,
            roles=frozenset(str(role) for role in roles),
            changed_at=changed_at.timestamp(),
            password_version=(
                epoch_micros(password_changed_at)
                if password_changed_at is not None and password_changed_at.tzinfo is not None
                else None
            ),
        )


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

    def record_user(self, user: Mapping[str, Any]) -> bool:
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


class IdentitySync:
    """The background task polling the change feed every `interval` seconds."""

    def __init__(
        self,
        *,
        identity: IdentityClient,
        authenticator: Authenticator,
        state: GatewayState,
        stamps: AccessStamps,
        interval: float,
        replay_seconds: float = 0.0,
    ) -> None:
        self._identity = identity
        self._replay_seconds = replay_seconds
        self._authenticator = authenticator
        self._state = state
        self._stamps = stamps
        self._interval = interval
        self._since: str | None = None
        self._failing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def watermark(self) -> str | None:
        """The `since` of the next poll (None until the first answer)."""
        return self._since

    def start(self) -> None:
        """Start polling in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="identity-sync")

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self._interval)

    async def poll(self) -> None:
        """Read every page since the watermark and apply it; never raises."""
        try:
            for _ in range(MAX_PAGES_PER_TICK):
                page = await self._identity.access_changes(self._since)
                changes, until, more = _page(page)
                for change in changes:
                    await self._apply(change)
                if self._since is None and self._replay_seconds > 0:
                    # A replica that just started has seen no change yet, but tokens issued
                    # before it started still live: replay the window they can live in.
                    start = datetime.fromisoformat(until) - timedelta(seconds=self._replay_seconds)
                    self._since = start.isoformat()
                    continue
                self._since = until
                if not more:
                    break
        except asyncio.CancelledError:
            raise
        except (GatewayError, FeedFormatError) as exc:
            self._went_down(type(exc).__name__)
        except Exception as exc:  # the task must outlive any surprise
            self._went_down(f"unexpected {type(exc).__name__}")
        else:
            self._came_back()
        self._stamps.prune(time.time())

    async def _apply(self, change: AccessChange) -> None:
        # `>=` paging repeats the watermark's rows: a change already held is skipped.
        if not self._stamps.record(change):
            return
        if change.is_active:
            await self._state.invalidate_api_keys(change.username)
        else:
            await self._authenticator.forget_user(change.username)

    def _went_down(self, reason: str) -> None:
        # Once per transition, never per tick; the watermark stays for the retry.
        if not self._failing:
            self._failing = True
            logger.warning(
                "identity sync: cannot read the identity service's changes (%s); "
                "retrying every %s s from the same watermark",
                reason,
                self._interval,
            )

    def _came_back(self) -> None:
        if self._failing:
            self._failing = False
            logger.warning("identity sync: reading the identity service's changes again")


def _page(body: Mapping[str, Any]) -> tuple[list[AccessChange], str, bool]:
    entries = body.get("changes")
    until = body.get("until")
    if not isinstance(entries, list) or not isinstance(until, str):
        raise FeedFormatError("the change feed answered without changes and until")
    try:
        datetime.fromisoformat(until)
    except ValueError:
        raise FeedFormatError("the change feed's until is not an ISO 8601 time") from None
    changes = [
        AccessChange.from_json(entry) if isinstance(entry, Mapping) else _bad_entry()
        for entry in entries
    ]
    return changes, until, body.get("more") is True


def _bad_entry() -> AccessChange:
    raise FeedFormatError("a change entry is not an object")
