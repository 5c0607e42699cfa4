"""Keep an in-process gateway state's logout revocations and API-key usage counts across
restarts, in the identity store: read back when the gateway starts, usage counts saved
every few seconds and at shutdown (revocations are saved by the logout itself).

With Redis the state outlives a gateway already, and no journal runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from services.api_gateway.errors import GatewayError
from services.api_gateway.identity import IdentityClient
from services.api_gateway.state.memory import MemoryState

logger = logging.getLogger("services.api_gateway.journal")


class StateJournal:
    """Restore a `MemoryState` from the identity store, then save its usage counts."""

    def __init__(self, *, identity: IdentityClient, state: MemoryState, interval: float) -> None:
        self._identity = identity
        self._state = state
        self._interval = interval
        self._restored = False
        # Set while the identity store does not answer: one warning per outage, not per tick.
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        state.journaled = True

    @property
    def restored(self) -> bool:
        """Tell whether what the previous runs saved has been read back."""
        return self._restored

    def start(self) -> None:
        """Read back and save in the background (the first read at once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="state-journal")

    async def stop(self) -> None:
        """Stop, then save what was counted since the last save."""
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.tick()

    async def _run(self) -> None:
        # The flag as well as the cancellation, as in IdentitySync: a swallowed cancellation
        # must not keep this loop alive.
        while not self._stopping:
            await self.tick()
            await asyncio.sleep(self._interval)

    async def tick(self) -> None:
        """Read back once (until it works), then save the counts made since; never raises."""
        try:
            if not self._restored:
                await self._restore()
            await self._save()
        except asyncio.CancelledError:
            raise
        except GatewayError as exc:
            self._went_down(f"the identity store is unreachable ({type(exc).__name__})")
        except Exception as exc:  # the task must outlive any surprise
            self._went_down(f"unexpected {type(exc).__name__}")
        else:
            if self._failing:
                self._failing = False
                logger.warning("state journal: the identity store answers again")

    def _went_down(self, reason: str) -> None:
        # Once per outage: a gateway started before the identity store, or an outage of
        # hours, is one line, not one every few seconds.
        if not self._failing:
            self._failing = True
            logger.warning(
                "state journal: %s; retrying every %s s",
                reason,
                self._interval,
            )

    async def _restore(self) -> None:
        revoked = await self._identity.revocations()
        stored = await self._identity.stored_usage()
        self._state.restore_revocations(revoked)
        self._state.restore_usage_counts(stored, unsaved=False)
        self._restored = True

    async def _save(self) -> None:
        counts = self._state.take_usage_counts()
        if not counts:
            return
        try:
            await self._identity.save_usage(counts)
        except BaseException:
            # Not saved: counted as unsaved again, for the next save.
            self._state.restore_usage_counts(counts, unsaved=True)
            raise
