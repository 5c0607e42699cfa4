"""Follow the identity service's change feed, so changes made there end live access here.

A deactivation, role change or rotation made straight in the identity store (the
operations guide's `PortfolioIdentityService`) never passes through the gateway. Every
replica polls `GET /internal/identity/changes` in the background and, per changed user:

- remembers the change in `AccessStamps` (stamps.py), which every bearer request is checked
  against: tokens obtained with access the user no longer has are refused.
- drops the user's cached API-key verifications in the shared state, so the next request
  asks the identity service again (a rotated key or an inactive account is refused).
- for a deactivation also revokes every tracked token in the shared state
  (`Authenticator.forget_user`), which outlives this replica's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.api_gateway import metrics
from services.api_gateway.accounts import AccessChange, FeedFormatError
from services.api_gateway.auth import Authenticator
from services.api_gateway.errors import GatewayError
from services.api_gateway.identity import IdentityClient
from services.api_gateway.stamps import AccessStamps
from services.api_gateway.state import GatewayState

logger = logging.getLogger("services.api_gateway.sync")

# Pages read in one tick at most; the rest follows at the next tick.
MAX_PAGES_PER_TICK = 20


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
        self._cursor: int | None = None
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def watermark(self) -> int | None:
        """The feed cursor the next poll reads after (None until the first answer)."""
        return self._cursor

    def start(self) -> None:
        """Start polling in the background."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="identity-sync")

    async def stop(self) -> None:
        """Cancel the task and wait for it to end."""
        if self._task is None:
            return
        self._stopping = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        # The flag as well as the cancellation: code under `poll` that swallows a
        # cancellation (asyncio.wait_for on Python 3.11 can) must not keep this loop alive.
        while not self._stopping:
            await self.poll()
            await asyncio.sleep(self._interval)

    async def poll(self) -> None:
        """Read every page since the watermark and apply it; never raises."""
        try:
            if self._cursor is None:
                # A replica that just started has seen no change yet, but tokens issued
                # before it started still live: start where the changes of the window they
                # can live in begin, as the identity service's clock measures it.
                window = self._replay_seconds if self._replay_seconds > 0 else None
                start = await self._identity.access_changes(None, window_seconds=window)
                self._cursor = start.cursor
            for _ in range(MAX_PAGES_PER_TICK):
                page = await self._identity.access_changes(self._cursor)
                for change in page.changes:
                    await self._apply(change)
                # Only once the page is applied: a failure above reads it again.
                self._cursor = page.cursor
                if not page.more:
                    break
        except asyncio.CancelledError:
            raise
        except (GatewayError, FeedFormatError) as exc:
            metrics.FEED_FAILED.inc()
            self._went_down(type(exc).__name__)
        except Exception as exc:  # the task must outlive any surprise
            metrics.FEED_FAILED.inc()
            self._went_down(f"unexpected {type(exc).__name__}")
        else:
            metrics.FEED_OK.inc()
            metrics.IDENTITY_FEED_LAST_SUCCESS.set_to_current_time()
            self._came_back()
        self._stamps.prune()

    async def _apply(self, change: AccessChange) -> None:
        # A change made through this gateway was recorded when it was made: skipped here.
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
