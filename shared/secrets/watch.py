"""Re-read the secrets a running service uses, and hand it the ones that changed.

A service resolves its secrets once at start-up; `SecretWatcher` reads the same names again
every `SECRETS_CACHE_TTL_SECONDS` (from the store, or from `SECRETS_ENV_FILE` on the env
provider) and calls the service back with the new values, so a rotated secret takes
effect without a restart. A failed read keeps the values in use; a callback that refuses
a value (say, a key that does not parse) is called again at the next read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path

import anyio.to_thread
from pydantic import SecretStr

from shared.secrets.envfile import read_env_file
from shared.secrets.errors import SecretsError
from shared.secrets.manager import SecretsManager

logger = logging.getLogger("shared.secrets")

SecretValues = Mapping[str, SecretStr | None]
OnChange = Callable[[SecretValues], Awaitable[None]]

# A TTL of 0 means "never cache"; polling still needs a pause.
MIN_INTERVAL_SECONDS = 0.5
# Reads on demand (a credential was just refused) are at most this frequent, whoever asks.
ON_DEMAND_MIN_SECONDS = 1.0


class LiveSecret:
    """A secret value in use, replaced in place when a watcher reads a rotated one."""

    __slots__ = ("refresh", "value")

    def __init__(self, value: SecretStr) -> None:
        self.value = value
        # Re-reads the value on demand (`SecretWatcher.refresh`); None: never.
        self.refresh: Callable[[], Awaitable[None]] | None = None

    def __repr__(self) -> str:
        return "LiveSecret(<redacted>)"


class SecretWatcher:
    """Poll some managed secrets and report every change to `on_change` (new values, all names)."""

    def __init__(
        self,
        manager: SecretsManager,
        names: Iterable[str],
        on_change: OnChange,
        *,
        interval: float | None = None,
        env_file: Path | None = None,
    ) -> None:
        self.manager = manager
        self.names = tuple(names)
        self._on_change = on_change
        ttl = manager.settings.secrets_cache_ttl_seconds
        self.interval = max(interval if interval is not None else ttl, MIN_INTERVAL_SECONDS)
        self._env_file = env_file if env_file is not None else manager.settings.secrets_env_file
        self._current: dict[str, str | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._on_demand = asyncio.Lock()
        self._last_on_demand = -ON_DEMAND_MIN_SECONDS

    async def read(self) -> dict[str, SecretStr | None]:
        """Read every watched name now, past any cache."""
        return await read_fresh(self.manager, self.names, env_file=self._env_file)

    async def prime(self) -> dict[str, SecretStr | None]:
        """Read the values and take them as the ones in use, without calling back."""
        values = await self.read()
        self._current = _plain(values)
        return values

    async def poll(self) -> bool:
        """Read once; call back when anything changed. Return whether it did."""
        try:
            values = await self.read()
        except SecretsError as exc:
            logger.warning("re-reading secrets failed, the values in use stay: %s", exc)
            return False
        plain = _plain(values)
        if plain == self._current:
            return False
        changed = sorted(
            name
            for name in self.names
            if self._current is None or plain[name] != self._current[name]
        )
        try:
            await self._on_change(values)
        except Exception as exc:
            # Whatever the service refuses, the old values stay in use and the next read
            # tries again. The message names the secrets and the reason, never a value.
            logger.error(  # no traceback: a frame could show a value
                "rotated secrets %s were not taken up (%s); the previous values stay in use",
                ", ".join(changed),
                type(exc).__name__ if not isinstance(exc, SecretsError | ValueError) else exc,
            )
            return False
        first = self._current is None
        self._current = plain
        if not first:  # the first read only confirms what start-up read
            logger.info("rotated secrets taken up: %s", ", ".join(changed))
        return True

    async def refresh(self) -> None:
        """Read now, for a caller whose credential was just refused: the secret may have been
        rotated and read by its peer first. At most once a second; concurrent callers share
        one read, so a stream of bad credentials cannot flood the store."""
        async with self._on_demand:
            now = time.monotonic()
            if now - self._last_on_demand < ON_DEMAND_MIN_SECONDS:
                return
            self._last_on_demand = now
            await self.poll()

    def start(self) -> None:
        """Poll in the background until `stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="secret-watcher")

    async def stop(self) -> None:
        """End the background polling."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.poll()


async def read_fresh(
    manager: SecretsManager, names: Iterable[str], *, env_file: Path | None = None
) -> dict[str, SecretStr | None]:
    """Read `names` past any cache: from the store, or on the env provider from `env_file`
    (default `SECRETS_ENV_FILE`) and then the environment the process started with."""
    names = tuple(names)
    env_file = env_file if env_file is not None else manager.settings.secrets_env_file
    if env_file is None or manager.store_location is not None:
        # Concurrent lookups share one read of the store document.
        values = await asyncio.gather(*(manager.get(name, fresh=True) for name in names))
        return dict(zip(names, values, strict=True))
    document = await anyio.to_thread.run_sync(read_env_file, env_file)
    found: dict[str, SecretStr | None] = {}
    for name in names:
        entry = manager.registry.get(name)
        candidates = entry.candidates if entry is not None else (name,)
        value = next((document[key] for key in candidates if document.get(key)), None)
        found[name] = SecretStr(value) if value else await manager.get(name)
    return found


def _plain(values: SecretValues) -> dict[str, str | None]:
    return {
        name: value.get_secret_value() if value is not None else None
        for name, value in values.items()
    }
