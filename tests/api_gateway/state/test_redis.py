"""The Redis backend: atomic counters with expiries, sharing between replicas, outages."""

import asyncio
import logging
import time

import pytest
import redis

from devstack.databases import SHARED_REDIS_URL
from devstack.ports import free_port
from services.api_gateway.errors import StartupError
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.state import ApiKeyUse, create_state
from services.api_gateway.state.base import StateCondition
from services.api_gateway.state.redis import RedisState
from tests.support.redis_server import RedisServer

FAR = 10**10


def api_key_principal(username: str = "alice", key_id: str = "k1") -> Principal:
    return Principal(
        username=username, roles=("trading",), auth_method=AuthMethod.API_KEY, key_id=key_id
    )


def use(at: float, *, key_id: str = "k1", service: str = "trading") -> ApiKeyUse:
    return ApiKeyUse(
        key_id=key_id, username="alice", service=service, status=200, client="10.0.0.1", at=at
    )


async def replica(url: str, prefix: str) -> RedisState:
    state = create_state(url, prefix=prefix, timeout=0.5)
    assert isinstance(state, RedisState)
    await state.start()
    return state


async def eventually(check, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.1)


async def test_every_key_the_backend_writes_has_an_expiry(redis_prefix):
    state = await replica(SHARED_REDIS_URL, redis_prefix)
    try:
        await state.reserve_login_attempt({"account:alice": 5, "address:10.0.0.1": 5}, 300)
        await state.track_token(subject="alice", jti="j1", expires_at=time.time() + 900)
        await state.revoke_token("j2", time.time() + 900)
        await state.track_token(subject="bob", jti="j3", expires_at=time.time() + 900)
        await state.revoke_subject("bob")
        await state.cache_api_key(
            "hash", api_key_principal(), ttl=30, epoch=await state.api_key_cache_epoch()
        )
        await state.record_api_key_use(use(time.time()))
    finally:
        await state.close()
    with redis.Redis.from_url(SHARED_REDIS_URL) as client:
        keys = list(client.scan_iter(match=redis_prefix + "*"))
        assert len(keys) >= 7
        assert {key: client.ttl(key) for key in keys if client.ttl(key) <= 0} == {}


async def test_api_key_usage_is_kept_thirty_days_after_the_last_use(redis_prefix):
    state = await replica(SHARED_REDIS_URL, redis_prefix)
    try:
        await state.record_api_key_use(use(time.time(), key_id="k-usage"))
    finally:
        await state.close()
    month = 30 * 24 * 3600
    with redis.Redis.from_url(SHARED_REDIS_URL) as client:
        ttl = client.ttl(f"{redis_prefix}usage:k-usage")
    assert month - 60 <= ttl <= month


async def test_concurrent_attempts_on_two_replicas_never_pass_the_limit(redis_prefix):
    replicas = [await replica(SHARED_REDIS_URL, redis_prefix) for _ in range(2)]
    limits = {"account:alice": 7, "address:10.0.0.1": 100}
    try:
        waits = await asyncio.gather(
            *(replicas[i % 2].reserve_login_attempt(limits, 300) for i in range(40))
        )
        assert waits.count(None) == 7
        # The refused attempts counted nothing, against either key.
        with redis.Redis.from_url(SHARED_REDIS_URL, decode_responses=True) as client:
            counts = [client.get(f"{redis_prefix}throttle:{key}") for key in limits]
        assert counts == ["7", "7"]
    finally:
        for state in replicas:
            await state.close()


async def test_two_replicas_share_revocations_invalidations_and_usage(redis_prefix):
    one = await replica(SHARED_REDIS_URL, redis_prefix)
    two = await replica(SHARED_REDIS_URL, redis_prefix)
    try:
        await one.track_token(subject="alice", jti="a1", expires_at=time.time() + 900)
        await two.track_token(subject="alice", jti="a2", expires_at=time.time() + 900)
        await one.revoke_subject("alice")
        assert await two.is_token_revoked("a1")
        assert await two.is_token_revoked("a2")

        await one.cache_api_key(
            "h", api_key_principal(), ttl=60, epoch=await one.api_key_cache_epoch()
        )
        assert await two.cached_api_key("h") == api_key_principal()
        await two.invalidate_api_keys("alice")
        assert await one.cached_api_key("h") is None

        await one.record_api_key_use(use(100.0, service="trading"))
        await two.record_api_key_use(use(200.0, service="market"))
        for state in (one, two):
            [usage] = await state.api_key_usage()
            assert usage.requests == 2
            assert usage.services == {"trading": 1, "market": 1}
            assert (usage.first_used_at, usage.last_used_at) == (100.0, 200.0)
    finally:
        await one.close()
        await two.close()


async def test_redis_down_keeps_auth_working_in_memory_and_logs_once(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="services.api_gateway.state")
    server = RedisServer(tmp_path).start()
    state = await replica(server.url, "lct-test:")
    try:
        assert state.condition().available
        server.stop()
        for attempt in range(5):
            assert await state.reserve_login_attempt({"account:alice": 5}, 300) is None
            await state.cache_api_key(
                f"h{attempt}", api_key_principal(), ttl=60, epoch=await state.api_key_cache_epoch()
            )
        assert await state.reserve_login_attempt({"account:alice": 5}, 300) is not None
        assert await state.cached_api_key("h0") == api_key_principal()
        await state.revoke_token("j1", time.time() + 900)
        assert await state.is_token_revoked("j1")
        condition = state.condition()
        assert not condition.available
        assert "in-memory" in condition.detail
        down = [r for r in caplog.records if "unreachable" in r.getMessage()]
        assert len(down) == 1
    finally:
        await state.close()
        server.stop()


async def test_redis_back_is_used_again_and_gets_what_was_owed(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="services.api_gateway.state")
    server = RedisServer(tmp_path).start()
    state = await replica(server.url, "lct-test:")
    try:
        server.stop()
        await state.revoke_token("owed", time.time() + 900)
        await state.record_api_key_use(use(50.0))
        assert not state.condition().available

        server.start()  # same port: the gateway's URL did not change
        await eventually(lambda: asyncio.sleep(0, state.condition().available))
        other = await replica(server.url, "lct-test:")
        try:
            assert await other.is_token_revoked("owed")
            [usage] = await other.api_key_usage()
            assert usage.requests == 1
            # The owed use keeps its status class (200 -> 2xx) through the replay.
            assert usage.status_classes == {"2xx": 1}
            assert usage.services == {"trading": 1}
        finally:
            await other.close()
        assert state.condition() == StateCondition(
            backend="redis", available=True, detail="shared by every replica"
        )
        assert len([r for r in caplog.records if "restored" in r.getMessage()]) == 1
    finally:
        await state.close()
        server.stop()


async def test_a_refused_attempt_waits_the_rest_of_the_window_in_seconds(redis_prefix):
    state = await replica(SHARED_REDIS_URL, redis_prefix)
    try:
        assert await state.reserve_login_attempt({"account:alice": 1}, 3000) is None
        retry_after = await state.reserve_login_attempt({"account:alice": 1}, 3000)
    finally:
        await state.close()
    # Redis answers the window's rest in milliseconds; the caller gets seconds.
    assert retry_after is not None
    assert 2998.5 <= retry_after <= 3000.0


async def test_an_api_key_is_not_cached_for_no_time_or_less(redis_prefix):
    state = await replica(SHARED_REDIS_URL, redis_prefix)
    try:
        epoch = await state.api_key_cache_epoch()
        for ttl in (0.0, -1.0):
            await state.cache_api_key("hash", api_key_principal(), ttl=ttl, epoch=epoch)
            assert await state.cached_api_key("hash") is None
    finally:
        await state.close()


async def test_attempts_counted_while_redis_was_down_still_count_once_it_is_back(tmp_path):
    server = RedisServer(tmp_path).start()
    state = await replica(server.url, "lct-test:")
    limits = {"account:alice": 3}
    try:
        server.stop()
        for _ in range(3):
            assert await state.reserve_login_attempt(limits, 300) is None
        server.start()
        await eventually(lambda: asyncio.sleep(0, state.condition().available))
        assert await state.reserve_login_attempt(limits, 300) is not None
    finally:
        await state.close()
        server.stop()


def test_a_malformed_redis_url_refuses_start_up_without_showing_it():
    url = "redis://:hunter2-secret@127.0.0.1:notaport/0"
    with pytest.raises(StartupError, match="GATEWAY_STATE_URL") as caught:
        create_state(url)
    assert "hunter2" not in str(caught.value)


async def test_a_refused_password_is_logged_as_down_without_the_password(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="services.api_gateway.state")
    with RedisServer(tmp_path, password="the-right-one") as server:
        state = await replica(
            f"redis://default:hunter2-secret@127.0.0.1:{server.port}/0", "lct-test:"
        )
        try:
            assert not state.condition().available
            assert await state.reserve_login_attempt({"account:alice": 1}, 300) is None
        finally:
            await state.close()
    assert caplog.records
    assert "hunter2" not in caplog.text


async def test_an_api_key_use_counts_in_its_status_class_up_to_599(redis_prefix):
    state = await replica(SHARED_REDIS_URL, redis_prefix)
    try:
        for status in (200, 404, 594, 599):
            await state.record_api_key_use(
                ApiKeyUse(
                    key_id="k1",
                    username="alice",
                    service="trading",
                    status=status,
                    client="10.0.0.1",
                    at=100.0,
                )
            )
        [usage] = await state.api_key_usage()
    finally:
        await state.close()
    assert usage.status_classes == {"2xx": 1, "4xx": 1, "5xx": 2}


async def test_the_usage_listing_stops_at_a_thousand_keys(redis_prefix):
    # What this proves is the listing's length, not the budget: on a loaded machine reading
    # a thousand rows can take longer than the default 0.25 s, and the listing would then
    # come from this replica's memory. So a generous budget, and no fall-back allowed.
    state = create_state(SHARED_REDIS_URL, prefix=redis_prefix, timeout=10.0, budget=10.0)
    assert isinstance(state, RedisState)
    await state.start()
    try:
        for n in range(1002):
            await state.record_api_key_use(use(1000.0 + n, key_id=f"k{n}"))
        listed = await state.api_key_usage()
        assert state.condition().available
    finally:
        await state.close()
    assert len(listed) == 1000
    # The most recently used keys first: k1001 down to k2.
    assert [u.key_id for u in listed[:2]] == ["k1001", "k1000"]
    assert listed[-1].key_id == "k2"


async def test_usage_owed_while_redis_is_down_is_summed_for_at_most_100000_keys():
    # Nothing listens on this port: the replica starts with Redis down.
    state = await replica(f"redis://127.0.0.1:{free_port()}/0", "lct-test:")
    try:
        assert not state.condition().available
        for n in range(100_001):
            await state.record_api_key_use(use(1000.0, key_id=f"k{n}"))
        await state.record_api_key_use(use(1001.0, key_id="k0"))
        assert state.owed == (0, 100_000)
        # The key beyond the bound is still counted in this replica's memory.
        usage = {u.key_id: u.requests for u in await state.api_key_usage()}
        assert (len(usage), usage["k0"], usage["k100000"]) == (100_001, 2, 1)
    finally:
        await state.close()


async def test_a_caller_cancelled_as_its_redis_call_ends_stays_cancelled(redis_prefix):
    # Every Redis call goes through `_shared`. The cancellation lands while the call is
    # suspended and the call then finishes: Python 3.11's `asyncio.wait_for` returned the
    # result and lost the cancellation, so a background task being stopped ran on forever.
    state = await replica(SHARED_REDIS_URL, redis_prefix)
    loop = asyncio.get_running_loop()
    caller: asyncio.Task[object] | None = None

    async def call() -> int:
        assert caller is not None
        loop.call_soon(caller.cancel)
        await asyncio.sleep(0)
        return 1

    try:
        caller = asyncio.ensure_future(state._shared(call))
        with pytest.raises(asyncio.CancelledError):
            await caller
    finally:
        await state.close()
