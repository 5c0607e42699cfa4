"""`GatewayState` held in this process: the default, and the fallback when Redis is down."""

from __future__ import annotations

import time
from collections.abc import Mapping

from services.api_gateway.principal import Principal
from services.api_gateway.state.base import ApiKeyUsage, ApiKeyUse, StateCondition
from shared.apikeys import merge_usage
from shared.clock import epoch_seconds

# An epoch read from this store: never equal to one read from Redis.
MEMORY_EPOCH = "memory:"


class MemoryState:
    """`GatewayState` in this process: right for one replica, lost on restart."""

    _SWEEP_EVERY = 1024

    def __init__(self) -> None:
        self._failures: dict[str, tuple[int, float]] = {}  # key -> (count, window end)
        self._revoked: dict[str, float] = {}  # jti -> exp
        self._issued: dict[str, dict[str, float]] = {}  # subject -> {jti: exp}
        self._api_keys: dict[str, tuple[Principal, float]] = {}  # hash -> (who, fresh until)
        self._usage: dict[str, ApiKeyUsage] = {}
        # Counts since the journal last took them (see `take_usage_counts`); kept only
        # once a journal saves them, so a Redis fallback never grows it.
        self._unsaved: dict[str, ApiKeyUsage] = {}
        self.journaled = False
        self._api_key_epoch = 0
        self._ops = 0

    def _sweep(self, now: float) -> None:
        # Expired entries are dropped lazily so memory stays bounded without a timer.
        self._ops += 1
        if self._ops % self._SWEEP_EVERY:
            return
        self._failures = {k: v for k, v in self._failures.items() if v[1] > now}
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        # The API-key cache counts its freshness on the monotonic clock, the rest on the wall.
        fresh = time.monotonic()
        self._api_keys = {k: v for k, v in self._api_keys.items() if v[1] > fresh}
        for subject in list(self._issued):
            live = {j: e for j, e in self._issued[subject].items() if e > now}
            if live:
                self._issued[subject] = live
            else:
                del self._issued[subject]

    async def reserve_login_attempt(
        self, limits: Mapping[str, int], window_seconds: float
    ) -> float | None:
        # No await from the check to the count: concurrent logins see each other's attempts.
        now = epoch_seconds()
        self._sweep(now)
        wait = self.login_wait(limits, now)
        if wait is not None:
            return wait
        for key in limits:
            count, until = self._failures.get(key, (0, 0.0))
            if until <= now:
                count, until = 0, now + window_seconds
            self._failures[key] = (count + 1, until)
        return None

    def login_wait(self, limits: Mapping[str, int], now: float) -> float | None:
        """Return seconds to wait if any key reached its limit at `now`, else None."""
        wait = 0.0
        for key, limit in limits.items():
            count, until = self._failures.get(key, (0, 0.0))
            if until > now and count >= limit:
                wait = max(wait, until - now)
        return wait or None

    async def refund_login_attempt(self, keys: tuple[str, ...]) -> None:
        now = epoch_seconds()
        for key in keys:
            count, until = self._failures.get(key, (0, 0.0))
            if until > now and count > 0:
                self._failures[key] = (count - 1, until)

    async def clear_login_failures(self, key: str) -> None:
        self._failures.pop(key, None)

    async def track_token(self, *, subject: str, jti: str, expires_at: float) -> None:
        self._sweep(epoch_seconds())
        self._issued.setdefault(subject, {})[jti] = expires_at

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        self._revoked[jti] = expires_at

    async def revoke_subject(self, subject: str) -> None:
        for jti, expires_at in self._issued.pop(subject, {}).items():
            self._revoked[jti] = expires_at

    async def is_token_revoked(self, jti: str) -> bool:
        return jti in self._revoked

    async def cached_api_key(self, key_hash: str) -> Principal | None:
        entry = self._api_keys.get(key_hash)
        if entry is None:
            return None
        if entry[1] <= time.monotonic():
            del self._api_keys[key_hash]
            return None
        return entry[0]

    async def api_key_cache_epoch(self) -> str:
        return f"{MEMORY_EPOCH}{self._api_key_epoch}"

    async def cache_api_key(
        self, key_hash: str, principal: Principal, ttl: float, *, epoch: str
    ) -> None:
        if ttl > 0 and epoch == await self.api_key_cache_epoch():
            self._sweep(epoch_seconds())
            self._api_keys[key_hash] = (principal, time.monotonic() + ttl)

    async def invalidate_api_keys(self, username: str) -> None:
        self._api_key_epoch += 1
        for key_hash in [h for h, (p, _) in self._api_keys.items() if p.username == username]:
            del self._api_keys[key_hash]

    async def record_api_key_use(self, use: ApiKeyUse) -> None:
        _count(self._usage, use)
        if self.journaled:
            _count(self._unsaved, use)

    def take_usage_counts(self) -> list[ApiKeyUsage]:
        """Return the counts made since the last call, and start counting afresh."""
        taken, self._unsaved = list(self._unsaved.values()), {}
        return taken

    def restore_usage_counts(self, counts: list[ApiKeyUsage], *, unsaved: bool) -> None:
        """Add counts to the totals: stored ones read at start (`unsaved=False`), or taken
        ones that could not be saved (`unsaved=True`: counted again as unsaved only)."""
        for count in counts:
            target = self._unsaved if unsaved else self._usage
            _merge(target, count)

    def restore_revocations(self, revoked: Mapping[str, float]) -> None:
        """Take up revocations made before this process started (jti -> expiry)."""
        now = epoch_seconds()
        self._revoked.update({jti: exp for jti, exp in revoked.items() if exp > now})

    async def api_key_usage(self) -> list[ApiKeyUsage]:
        return sorted(self._usage.values(), key=lambda u: u.last_used_at, reverse=True)

    async def start(self) -> None:
        return None

    def condition(self) -> StateCondition:
        return StateCondition(backend="memory", available=True, detail="in this process")

    async def close(self) -> None:
        return None


def _count(usage: dict[str, ApiKeyUsage], use: ApiKeyUse) -> None:
    entry = usage.get(use.key_id)
    if entry is None:
        entry = usage[use.key_id] = ApiKeyUsage(
            key_id=use.key_id, username=use.username, first_used_at=use.at
        )
    entry.username = use.username
    entry.requests += 1
    if use.service is not None:
        entry.services[use.service] = entry.services.get(use.service, 0) + 1
    status_class = f"{use.status // 100}xx"
    entry.status_classes[status_class] = entry.status_classes.get(status_class, 0) + 1
    entry.last_used_at = use.at
    entry.last_client = use.client


def _merge(usage: dict[str, ApiKeyUsage], count: ApiKeyUsage) -> None:
    entry = usage.get(count.key_id)
    if entry is None:
        # Blank but for the times: adding the count makes it an exact copy.
        entry = usage[count.key_id] = ApiKeyUsage(
            key_id=count.key_id,
            username=count.username,
            first_used_at=count.first_used_at,
            last_used_at=count.last_used_at,
        )
    merge_usage(entry, count)
