"""Redis cut off behind a proxy the test controls: what a replica owes Redis while it is
away reaches it when it returns, and security work is never crowded out by usage counts."""

import asyncio
import logging
import time

from devstack.databases import SHARED_REDIS_URL
from services.api_gateway.state import create_state
from services.api_gateway.state.redis import RedisState
from tests.api_gateway.state.test_redis import eventually, replica, use
from tests.support.tcp_proxy import TcpProxy

REDIS_PORT = 6379


async def back(state: RedisState) -> None:
    await eventually(lambda: asyncio.sleep(0, state.condition().available))


async def test_a_logout_survives_any_number_of_api_key_uses_during_an_outage(redis_prefix):
    with TcpProxy(REDIS_PORT) as proxy:
        cut_off = await replica(proxy.url(), redis_prefix)
        other = await replica(SHARED_REDIS_URL, redis_prefix)
        try:
            proxy.cut()
            await cut_off.revoke_token("logged-out", time.time() + 900)
            assert not cut_off.condition().available
            # Far more requests than the old shared queue held (50,000), on two keys.
            for n in range(60_000):
                await cut_off.record_api_key_use(use(1000.0 + n, key_id=f"k{n % 2}"))
            assert cut_off.owed == (1, 2)
            proxy.restore()
            await back(cut_off)
            assert await other.is_token_revoked("logged-out")
            usage = {u.key_id: u for u in await other.api_key_usage()}
            assert {key: u.requests for key, u in usage.items()} == {"k0": 30_000, "k1": 30_000}
            assert usage["k1"].first_used_at == 1001.0
            assert usage["k1"].last_used_at == 60_999.0
            assert usage["k1"].services == {"trading": 30_000}
            assert usage["k1"].status_classes == {"2xx": 30_000}
            assert cut_off.owed == (0, 0)
        finally:
            await cut_off.close()
            await other.close()


async def test_a_token_issued_while_redis_is_down_is_found_by_a_revoke_all_on_return(
    redis_prefix,
):
    with TcpProxy(REDIS_PORT) as proxy:
        cut_off = await replica(proxy.url(), redis_prefix)
        other = await replica(SHARED_REDIS_URL, redis_prefix)
        try:
            proxy.cut()
            await cut_off.track_token(
                subject="alice", jti="issued-offline", expires_at=time.time() + 900
            )
            proxy.restore()
            await back(cut_off)
            await other.revoke_subject("alice")
            assert await other.is_token_revoked("issued-offline")
            assert await cut_off.is_token_revoked("issued-offline")
        finally:
            await cut_off.close()
            await other.close()


async def test_owed_work_is_replayed_in_order_so_a_later_login_survives_an_earlier_revoke_all(
    redis_prefix,
):
    with TcpProxy(REDIS_PORT) as proxy:
        cut_off = await replica(proxy.url(), redis_prefix)
        other = await replica(SHARED_REDIS_URL, redis_prefix)
        try:
            proxy.cut()
            far = time.time() + 900
            await cut_off.track_token(subject="alice", jti="before", expires_at=far)
            await cut_off.revoke_subject("alice")  # e.g. a password rotation
            await cut_off.track_token(subject="alice", jti="after", expires_at=far)
            proxy.restore()
            await back(cut_off)
            assert await other.is_token_revoked("before")
            assert not await other.is_token_revoked("after")
            await other.revoke_subject("alice")
            assert await other.is_token_revoked("after")
        finally:
            await cut_off.close()
            await other.close()


async def test_a_slow_redis_costs_one_call_the_budget_then_memory_answers(redis_prefix, caplog):
    caplog.set_level(logging.WARNING, logger="services.api_gateway.state")
    with TcpProxy(REDIS_PORT) as proxy:
        state = create_state(proxy.url(), prefix=redis_prefix, timeout=5.0, budget=0.2)
        assert isinstance(state, RedisState)
        await state.start()
        try:
            await state.revoke_token("known", time.time() + 900)
            proxy.delay = 0.45  # one call would take 0.9 s
            started = time.monotonic()
            assert not await state.is_token_revoked("other")
            assert time.monotonic() - started < 0.45
            condition = state.condition()
            assert not condition.available
            assert "slow" in condition.detail
            # From now on memory answers at once, including what this replica revoked.
            started = time.monotonic()
            for _ in range(20):
                assert await state.is_token_revoked("known")
                assert not await state.is_token_revoked("other")
            assert time.monotonic() - started < 0.45
            proxy.delay = 0.0
            await back(state)
        finally:
            await state.close()
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1
    assert "slow" in warnings[0]


async def test_the_probe_keeps_trying_through_a_long_outage(redis_prefix):
    # Probed every second: several probes fail while Redis is away, and one after it is
    # back still restores the shared state.
    with TcpProxy(REDIS_PORT) as proxy:
        state = await replica(proxy.url(), redis_prefix)
        try:
            proxy.cut()
            await state.revoke_token("during-outage", time.time() + 900)
            assert not state.condition().available
            await asyncio.sleep(3.5)
            assert not state.condition().available
            proxy.restore()
            await back(state)
        finally:
            await state.close()
