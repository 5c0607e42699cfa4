"""`GatewayState` in Redis, shared by every gateway replica; in memory while Redis is down.

Every counter and throttle changes in one Lua script, so a key gets its expiry in the same
atomic step that creates it and never lives without one. Revocations are
`SET revoked:<jti> <exp> EXAT <exp>`. API-key verifications are cached in Redis itself
(by the key's hash, never the key), with a per-user index, so an invalidation on one
replica is seen by every other at its next lookup: no replica keeps a private copy that
a lost pub/sub message could leave stale.

When Redis stops answering, every call falls back to a `MemoryState` in this process
(authentication keeps working), the transition is logged once, `/readyz` says so, and a
background probe brings Redis back into use when it answers again. What is owed to Redis
meanwhile is replayed into it first, in two parts that never crowd each other out:

- the security work (revocations, revoke-alls, tokens issued, API-key invalidations, cleared
  throttles), in the order it happened, one entry per token, user or key: bounded by the
  live tokens and the users, and an expired token's entry is dropped rather than replayed;
- API-key usage, summed per key id (one entry per key, however many requests).

A token issued while Redis is down is owed too, so a revoke-all on any replica once Redis is
back finds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from services.api_gateway import metrics
from services.api_gateway.errors import StartupError
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.state.base import ApiKeyUsage, ApiKeyUse, StateCondition
from services.api_gateway.state.memory import MemoryState
from shared.clock import epoch_seconds

logger = logging.getLogger("services.api_gateway.state")

T = TypeVar("T")
Op = Callable[[], Awaitable[object]]

# Usage counters are audit data: kept a month after the key's last use, never forever.
USAGE_RETENTION_SECONDS: Final = 30 * 24 * 3600
USAGE_LIST_LIMIT: Final = 1000
# Key ids whose usage is summed while Redis is down; a key beyond this many is counted in
# this replica's memory only (usage is audit data, never a security decision).
USAGE_OWED_LIMIT: Final = 100_000
DOWN_ERRORS: Final = (RedisError, OSError, asyncio.TimeoutError)
# An epoch read from Redis (see `api_key_cache_epoch`).
REDIS_EPOCH: Final = "redis:"

_RESERVE_ATTEMPT = """
-- KEYS: throttle counters. ARGV[1]: window (ms), ARGV[i + 1]: the limit of KEYS[i].
-- Counts one attempt against every key unless one has reached its limit; then counts
-- nothing and returns the longest wait (ms). 0: counted. One script, so concurrent logins
-- on any replica see each other's attempts, and a counter never lives without an expiry.
local wait = 0
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('GET', key) or '0')
  if count >= tonumber(ARGV[i + 1]) then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, ARGV[1])
      ttl = tonumber(ARGV[1])
    end
    wait = math.max(wait, ttl, 1)
  end
end
if wait > 0 then return wait end
for _, key in ipairs(KEYS) do
  if redis.call('INCR', key) == 1 or redis.call('PTTL', key) < 0 then
    redis.call('PEXPIRE', key, ARGV[1])
  end
end
return 0
"""

_REFUND_ATTEMPT = """
-- KEYS: throttle counters. Takes one attempt back from each that still counts any
-- (DECR keeps the expiry).
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then
    redis.call('DECR', key)
  end
end
return 0
"""

_TRACK_ISSUED = """
-- KEYS[1]: the subject's live tokens (jti scored by exp). ARGV: jti, exp, now (seconds).
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('EXPIREAT', KEYS[1], math.ceil(tonumber(last[2])))
return 0
"""

_REVOKE_SUBJECT = """
-- KEYS[1]: the subject's live tokens. ARGV: revoked-key prefix, now (seconds).
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[2], '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  redis.call('SET', ARGV[1] .. live[i], live[i + 1], 'EXAT', math.ceil(tonumber(live[i + 1])))
end
redis.call('DEL', KEYS[1])
return #live / 2
"""

_CACHE_API_KEY = """
-- KEYS[1]: the cache entry, KEYS[2]: the user's index of cached hashes, KEYS[3]: the
-- invalidation epoch. ARGV: principal JSON, ttl (ms), key hash, the epoch read before the
-- key was verified. An invalidation since then wins: nothing is cached.
if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 0
"""

_INVALIDATE_API_KEYS = """
-- KEYS[1]: the user's index of cached hashes, KEYS[2]: the invalidation epoch.
-- ARGV[1]: cache-entry prefix.
redis.call('INCR', KEYS[2])
local hashes = redis.call('SMEMBERS', KEYS[1])
for _, hash in ipairs(hashes) do
  redis.call('DEL', ARGV[1] .. hash)
end
redis.call('DEL', KEYS[1])
return #hashes
"""

_RECORD_USE = """
-- KEYS[1]: the key's usage hash, KEYS[2]: key ids scored by last use.
-- ARGV: key id, username, service ('' for none), status class, at, client ('' for none),
-- retention (seconds).
local usage, at = KEYS[1], tonumber(ARGV[5])
redis.call('HINCRBY', usage, 'requests', 1)
if ARGV[3] ~= '' then redis.call('HINCRBY', usage, 'service:' .. ARGV[3], 1) end
redis.call('HINCRBY', usage, 'status:' .. ARGV[4], 1)
local first = redis.call('HGET', usage, 'first_used_at')
if not first or at < tonumber(first) then redis.call('HSET', usage, 'first_used_at', ARGV[5]) end
local last = redis.call('HGET', usage, 'last_used_at')
if not last or at >= tonumber(last) then
  redis.call('HSET', usage, 'last_used_at', ARGV[5], 'username', ARGV[2], 'last_client', ARGV[6])
  redis.call('ZADD', KEYS[2], ARGV[5], ARGV[1])
end
redis.call('EXPIRE', usage, ARGV[7])
redis.call('EXPIRE', KEYS[2], ARGV[7])
return 0
"""


_ADD_USAGE = """
-- KEYS[1]: the key's usage hash, KEYS[2]: key ids scored by last use.
-- ARGV: key id, username, first use, last use, client ('' for none), retention (seconds),
-- then field/increment pairs (requests, service:<name>, status:<class>).
local usage = KEYS[1]
local first_at, last_at = tonumber(ARGV[3]), tonumber(ARGV[4])
for i = 7, #ARGV, 2 do
  redis.call('HINCRBY', usage, ARGV[i], ARGV[i + 1])
end
local first = redis.call('HGET', usage, 'first_used_at')
if not first or first_at < tonumber(first) then redis.call('HSET', usage, 'first_used_at', ARGV[3]) end
local last = redis.call('HGET', usage, 'last_used_at')
if not last or last_at >= tonumber(last) then
  redis.call('HSET', usage, 'last_used_at', ARGV[4], 'username', ARGV[2], 'last_client', ARGV[5])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
end
redis.call('EXPIRE', usage, ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 0
"""


class _Unavailable:
    """Redis did not answer this call."""


UNAVAILABLE: Final = _Unavailable()


class RedisState:
    """`GatewayState` shared through Redis, with an in-memory fallback while it is down."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str,
        probe_interval: float = 1.0,
        budget: float = 0.25,
    ) -> None:
        self._redis = client
        self._prefix = prefix
        self._budget = budget
        self._probe_interval = probe_interval
        self._memory = MemoryState()
        self._up = True
        metrics.REDIS_UP.set(1)
        self._since = epoch_seconds()
        self._reason = ""
        # Security work owed to Redis, in order, one entry per (kind, token/user/key): a
        # repeat replaces the earlier one and moves to the end. Values: (op, expires at).
        self._owed: OrderedDict[tuple[str, str], tuple[Op, float | None]] = OrderedDict()
        # API-key usage owed to Redis, summed per key id.
        self._owed_usage: dict[str, ApiKeyUsage] = {}
        self._probe: asyncio.Task[None] | None = None
        self._reserve_attempt = client.register_script(_RESERVE_ATTEMPT)
        self._refund_attempt = client.register_script(_REFUND_ATTEMPT)
        self._track_token = client.register_script(_TRACK_ISSUED)
        self._revoke_subject = client.register_script(_REVOKE_SUBJECT)
        self._cache_api_key = client.register_script(_CACHE_API_KEY)
        self._invalidate_api_keys = client.register_script(_INVALIDATE_API_KEYS)
        self._record_use = client.register_script(_RECORD_USE)
        self._add_usage = client.register_script(_ADD_USAGE)

    @classmethod
    def from_url(cls, url: str, *, prefix: str, timeout: float, budget: float = 0.25) -> RedisState:
        """Connect lazily to the Redis `GATEWAY_STATE_URL` names."""
        try:
            client = aioredis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # One immediate retry reconnects a pooled connection Redis dropped (e.g. a
                # restart) without turning an outage into seconds of back-off per request.
                retry=Retry(NoBackoff(), 1),
                decode_responses=True,
            )
        except ValueError:
            # The URL may hold a password: name the variable, never the value.
            raise StartupError(
                "gateway cannot start: GATEWAY_STATE_URL is not a valid Redis URL"
            ) from None
        return cls(client, prefix=prefix, budget=budget)

    # --- availability ---------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._redis.ping()
        except DOWN_ERRORS as exc:
            self._went_down(exc)

    def condition(self) -> StateCondition:
        if self._up:
            return StateCondition(backend="redis", available=True, detail="shared by every replica")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._since))
        return StateCondition(
            backend="redis",
            available=False,
            detail=(
                f"Redis unreachable since {since} ({self._reason}); this replica uses "
                "in-memory state until it answers again"
            ),
        )

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        await self._redis.aclose()

    def _reason_for(self, exc: BaseException) -> str:
        # `asyncio.timeout` raises the builtin TimeoutError; the client's own is a RedisError.
        if type(exc) is TimeoutError:
            return f"slow: no answer within the {self._budget:g} s budget"
        return type(exc).__name__

    def _went_down(self, exc: BaseException) -> None:
        if not self._up:
            return
        self._up = False
        metrics.REDIS_UP.set(0)
        self._since = epoch_seconds()
        self._reason = self._reason_for(exc)
        # Logged once per transition, never per request; never the URL (it may hold a password).
        logger.warning(
            "gateway state: Redis unreachable (%s); using in-memory state in this replica "
            "until it answers again within the budget",
            self._reason,
        )
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._wait_for_redis())

    async def _wait_for_redis(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                # Back only once it answers within the budget: a Redis that merely answers,
                # slowly, would cost every request the budget again. The first ping may have
                # to connect, which a request rarely does: only the second is timed.
                await self._redis.ping()
                async with asyncio.timeout(self._budget):
                    await self._redis.ping()
                await self._replay()
            except DOWN_ERRORS as exc:
                self._reason = self._reason_for(exc)
                continue
            # No await between the last replayed call and this: nothing new can queue up.
            self._up = True
            metrics.REDIS_UP.set(1)
            self._since = epoch_seconds()
            logger.warning("gateway state: Redis answers again; shared state restored")
            return

    async def _shared(self, call: Callable[[], Awaitable[T]]) -> T | _Unavailable:
        if not self._up:
            metrics.SHARED_STATE_FALLBACKS.inc()
            return UNAVAILABLE
        try:
            # A slow Redis costs a request at most the budget, once: then it counts as down
            # and every call uses this replica's memory until the probe finds it prompt.
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` returns the result
            # of a call that finished as its caller was cancelled, and the cancellation is
            # lost (a gateway's background task then never stops).
            async with asyncio.timeout(self._budget):
                return await call()
        except DOWN_ERRORS as exc:
            self._went_down(exc)
            metrics.SHARED_STATE_FALLBACKS.inc()
            return UNAVAILABLE

    async def _shared_or_owed(
        self, what: tuple[str, str], call: Op, *, expires_at: float | None = None
    ) -> None:
        """Run a security write in Redis, or owe it for when Redis answers again."""
        if isinstance(await self._shared(call), _Unavailable):
            self._owe(what, call, expires_at)

    def _owe(self, what: tuple[str, str], call: Op, expires_at: float | None) -> None:
        self._owed.pop(what, None)
        self._owed[what] = (call, expires_at)
        if len(self._owed) % 1024 == 0:
            self._drop_expired(epoch_seconds())

    def _drop_expired(self, now: float) -> None:
        # A token past its expiry is refused anyway: its revocation or tracking is not owed.
        for what in [w for w, (_, exp) in self._owed.items() if exp is not None and exp <= now]:
            del self._owed[what]

    async def _replay(self) -> None:
        """Write what is owed into Redis: the security work in order, then the usage sums.
        Raises a `DOWN_ERRORS` error if Redis goes away again; what is left stays owed."""
        self._drop_expired(epoch_seconds())
        while self._owed:
            what, (call, _) = next(iter(self._owed.items()))
            await call()
            # The same entry may have been owed again while the call ran: keep the new one.
            if self._owed.get(what, (None, None))[0] is call:
                del self._owed[what]
        while self._owed_usage:
            key_id, usage = next(iter(self._owed_usage.items()))
            await self._merge_usage(usage)
            if self._owed_usage.get(key_id) is usage:
                del self._owed_usage[key_id]

    async def _merge_usage(self, usage: ApiKeyUsage) -> None:
        increments: list[str | int] = ["requests", usage.requests]
        for service, count in usage.services.items():
            increments += [f"service:{service}", count]
        for status_class, count in usage.status_classes.items():
            increments += [f"status:{status_class}", count]
        await self._add_usage(
            [self._key("usage", usage.key_id), self._key("usage-index")],
            [
                usage.key_id,
                usage.username,
                repr(usage.first_used_at),
                repr(usage.last_used_at),
                usage.last_client or "",
                USAGE_RETENTION_SECONDS,
                *increments,
            ],
        )

    @property
    def owed(self) -> tuple[int, int]:
        """How many security entries and usage sums are owed to Redis (for tests, /readyz)."""
        return len(self._owed), len(self._owed_usage)

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # --- login throttling ------------------------------------------------------------

    async def reserve_login_attempt(
        self, limits: Mapping[str, int], window_seconds: float
    ) -> float | None:
        # Attempts counted in memory while Redis was down still count until they expire.
        local = self._memory.login_wait(limits, epoch_seconds())
        if local is not None:
            return local
        keys = [self._key("throttle", key) for key in limits]
        args = [max(1, math.ceil(window_seconds * 1000)), *limits.values()]
        shared = await self._shared(lambda: self._reserve_attempt(keys, args))
        if isinstance(shared, _Unavailable):
            return await self._memory.reserve_login_attempt(limits, window_seconds)
        return int(shared) / 1000 or None

    async def refund_login_attempt(self, keys: tuple[str, ...]) -> None:
        # Given back where it is counted now: across an outage's edge that may be the other
        # store, and a refund never takes a count below zero, so at worst one attempt moves.
        names = [self._key("throttle", key) for key in keys]
        shared = await self._shared(lambda: self._refund_attempt(names))
        if isinstance(shared, _Unavailable):
            await self._memory.refund_login_attempt(keys)

    async def clear_login_failures(self, key: str) -> None:
        await self._memory.clear_login_failures(key)
        name = self._key("throttle", key)
        await self._shared_or_owed(("clear", key), lambda: self._redis.delete(name))

    # --- tokens ---------------------------------------------------------------------

    async def track_token(self, *, subject: str, jti: str, expires_at: float) -> None:
        # Also in memory, so this replica can still revoke a user's tokens while Redis is down.
        await self._memory.track_token(subject=subject, jti=jti, expires_at=expires_at)
        key = self._key("issued", subject)
        # Owed if Redis is down: a revoke-all on any replica once it is back must find it.
        await self._shared_or_owed(
            ("track", jti),
            lambda: self._track_token([key], [jti, expires_at, epoch_seconds()]),
            expires_at=expires_at,
        )

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        await self._memory.revoke_token(jti, expires_at)
        if expires_at <= epoch_seconds():
            return  # already expired: refused anyway
        key = self._key("revoked", jti)
        await self._shared_or_owed(
            ("revoke", jti),
            lambda: self._redis.set(key, repr(expires_at), exat=math.ceil(expires_at)),
            expires_at=expires_at,
        )

    async def revoke_subject(self, subject: str) -> None:
        await self._memory.revoke_subject(subject)
        key, revoked = self._key("issued", subject), self._key("revoked", "")
        await self._shared_or_owed(
            ("subject", subject),
            lambda: self._revoke_subject([key], [revoked, epoch_seconds()]),
        )

    async def is_token_revoked(self, jti: str) -> bool:
        if await self._memory.is_token_revoked(jti):
            return True
        expires_at = await self._shared(lambda: self._redis.get(self._key("revoked", jti)))
        if isinstance(expires_at, _Unavailable) or expires_at is None:
            return False
        # Remembered here too, so it stays refused if Redis goes away.
        await self._memory.revoke_token(jti, float(expires_at))
        return True

    # --- API-key verification cache ------------------------------------------------------

    async def cached_api_key(self, key_hash: str) -> Principal | None:
        cached = await self._shared(lambda: self._redis.get(self._key("apikey", key_hash)))
        if isinstance(cached, _Unavailable):
            return await self._memory.cached_api_key(key_hash)
        return None if cached is None else _principal(str(cached))

    async def api_key_cache_epoch(self) -> str:
        shared = await self._shared(lambda: self._redis.get(self._key("apikey-epoch")))
        if isinstance(shared, _Unavailable):
            return await self._memory.api_key_cache_epoch()
        return REDIS_EPOCH + (str(shared) if shared is not None else "0")

    async def cache_api_key(
        self, key_hash: str, principal: Principal, ttl: float, *, epoch: str
    ) -> None:
        if ttl <= 0:
            return
        if not epoch.startswith(REDIS_EPOCH):
            # Read from this replica's memory while Redis was down: cached there or nowhere.
            await self._memory.cache_api_key(key_hash, principal, ttl, epoch=epoch)
            return
        keys = [
            self._key("apikey", key_hash),
            self._key("apikeys", principal.username),
            self._key("apikey-epoch"),
        ]
        body = json.dumps(
            {"username": principal.username, "roles": principal.roles, "key_id": principal.key_id}
        )
        ttl_ms = max(1, math.ceil(ttl * 1000))
        seen = epoch.removeprefix(REDIS_EPOCH)
        # Redis went away meanwhile: not cached at all (the epoch cannot be checked), so
        # the next request verifies the key again.
        await self._shared(lambda: self._cache_api_key(keys, [body, ttl_ms, key_hash, seen]))

    async def invalidate_api_keys(self, username: str) -> None:
        await self._memory.invalidate_api_keys(username)
        index, entries = self._key("apikeys", username), self._key("apikey", "")
        epoch = self._key("apikey-epoch")
        await self._shared_or_owed(
            ("invalidate", username), lambda: self._invalidate_api_keys([index, epoch], [entries])
        )

    # --- API-key usage ------------------------------------------------------------------

    async def record_api_key_use(self, use: ApiKeyUse) -> None:
        keys = [self._key("usage", use.key_id), self._key("usage-index")]
        args: list[str | int] = [
            use.key_id,
            use.username,
            use.service or "",
            f"{use.status // 100}xx",
            repr(use.at),
            use.client or "",
            USAGE_RETENTION_SECONDS,
        ]

        async def call() -> object:
            return await self._record_use(keys, args)

        if isinstance(await self._shared(call), _Unavailable):
            await self._memory.record_api_key_use(use)
            self._owe_usage(use)

    def _owe_usage(self, use: ApiKeyUse) -> None:
        usage = self._owed_usage.get(use.key_id)
        if usage is None:
            if len(self._owed_usage) >= USAGE_OWED_LIMIT:
                return  # counted in this replica's memory; never at the expense of security
            usage = self._owed_usage[use.key_id] = ApiKeyUsage(
                key_id=use.key_id, username=use.username, first_used_at=use.at
            )
        usage.username = use.username
        usage.requests += 1
        if use.service is not None:
            usage.services[use.service] = usage.services.get(use.service, 0) + 1
        status_class = f"{use.status // 100}xx"
        usage.status_classes[status_class] = usage.status_classes.get(status_class, 0) + 1
        usage.first_used_at = min(usage.first_used_at, use.at)
        if use.at >= usage.last_used_at:
            usage.last_used_at = use.at
            usage.last_client = use.client

    async def api_key_usage(self) -> list[ApiKeyUsage]:
        shared = await self._shared(self._usage_from_redis)
        if isinstance(shared, _Unavailable):
            return await self._memory.api_key_usage()
        return shared

    async def _usage_from_redis(self) -> list[ApiKeyUsage]:
        found = await self._redis.zrevrange(self._key("usage-index"), 0, USAGE_LIST_LIMIT - 1)
        key_ids = [str(key_id) for key_id in found]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hgetall(self._key("usage", key_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return [_usage(key_id, row) for key_id, row in zip(key_ids, rows, strict=True) if row]


def _principal(text: str) -> Principal | None:
    try:
        data: dict[str, Any] = json.loads(text)
        return Principal(
            username=str(data["username"]),
            roles=tuple(str(role) for role in data["roles"]),
            auth_method=AuthMethod.API_KEY,
            key_id=str(data["key_id"]) if data.get("key_id") else None,
        )
    except (ValueError, KeyError, TypeError):
        return None  # unreadable entry: verify the key again


def _usage(key_id: str, row: Mapping[str, str]) -> ApiKeyUsage:
    services = {
        k.removeprefix("service:"): int(v) for k, v in row.items() if k.startswith("service:")
    }
    statuses = {
        k.removeprefix("status:"): int(v) for k, v in row.items() if k.startswith("status:")
    }
    return ApiKeyUsage(
        key_id=key_id,
        username=row.get("username", ""),
        requests=int(row.get("requests", 0)),
        services=services,
        status_classes=statuses,
        first_used_at=float(row.get("first_used_at", 0.0)),
        last_used_at=float(row.get("last_used_at", 0.0)),
        last_client=row.get("last_client") or None,
    )
