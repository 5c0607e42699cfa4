import asyncio

import pytest
from prometheus_client import REGISTRY

from services.api_gateway.errors import StartupError
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.state import ApiKeyUse, MemoryState, create_state


def fallback_count() -> float:
    return REGISTRY.get_sample_value("gateway_shared_state_fallbacks_total") or 0.0


def principal(username: str = "alice") -> Principal:
    return Principal(
        username=username, roles=("trading",), auth_method=AuthMethod.API_KEY, key_id="k1"
    )


async def test_login_is_throttled_once_a_key_reaches_its_limit(state):
    limits = {"account:alice": 2, "address:10.0.0.1": 10}
    for _ in range(2):
        assert await state.reserve_login_attempt(limits, 60) is None
    retry_after = await state.reserve_login_attempt(limits, 60)
    assert retry_after is not None
    assert 0 < retry_after <= 60


async def test_a_refused_attempt_counts_against_no_key(state):
    await state.reserve_login_attempt({"account:alice": 1}, 60)
    assert await state.reserve_login_attempt({"account:alice": 1, "address:a": 2}, 60) is not None
    # The refusal took nothing from the address: it still has both attempts.
    for _ in range(2):
        assert await state.reserve_login_attempt({"address:a": 2}, 60) is None
    assert await state.reserve_login_attempt({"address:a": 2}, 60) is not None


# What this proves is that the shared count is atomic, not the budget: on a loaded machine a
# Redis call can outlast the default 0.25 s, and a replica that fell back to its memory would
# count apart from Redis. So a generous budget, and no fall-back allowed.
@pytest.mark.parametrize("redis_timing", [{"timeout": 10.0, "budget": 10.0}], ids=["patient"])
async def test_concurrent_reservations_never_pass_the_limit(state):
    fallbacks = fallback_count()
    limits = {"account:alice": 5, "address:10.0.0.1": 20}
    waits = await asyncio.gather(*(state.reserve_login_attempt(limits, 60) for _ in range(40)))
    assert fallback_count() == fallbacks
    assert state.condition().available
    assert waits.count(None) == 5
    assert all(wait is not None and 0 < wait <= 60 for wait in waits if wait is not None)


async def test_a_refunded_attempt_can_be_taken_again(state):
    limits = {"account:alice": 2, "address:a": 10}
    for _ in range(2):
        assert await state.reserve_login_attempt(limits, 60) is None
    await state.refund_login_attempt(("account:alice", "address:a"))
    assert await state.reserve_login_attempt(limits, 60) is None
    assert await state.reserve_login_attempt(limits, 60) is not None


async def test_a_refund_never_takes_a_count_below_zero(state):
    for _ in range(3):
        await state.refund_login_attempt(("account:alice",))
    assert await state.reserve_login_attempt({"account:alice": 1}, 60) is None
    assert await state.reserve_login_attempt({"account:alice": 1}, 60) is not None


async def test_refunds_in_a_live_window_never_take_the_count_below_zero(state):
    limits = {"account:alice": 1}
    assert await state.reserve_login_attempt(limits, 60) is None
    for _ in range(2):  # one more refund than was reserved
        await state.refund_login_attempt(("account:alice",))
    assert await state.reserve_login_attempt(limits, 60) is None
    assert await state.reserve_login_attempt(limits, 60) is not None


async def test_a_refund_gives_back_exactly_one_attempt(state):
    limits = {"account:alice": 5}
    for _ in range(3):
        assert await state.reserve_login_attempt(limits, 60) is None
    await state.refund_login_attempt(("account:alice",))
    for _ in range(3):  # 2 counted, 3 left
        assert await state.reserve_login_attempt(limits, 60) is None
    assert await state.reserve_login_attempt(limits, 60) is not None


async def test_a_key_past_a_lower_limit_is_refused(state):
    # Replicas of a rolling configuration change share the counts but not the limit.
    for _ in range(4):
        assert await state.reserve_login_attempt({"account:alice": 5}, 60) is None
    assert await state.reserve_login_attempt({"account:alice": 3}, 60) is not None


async def test_throttle_window_passes(state):
    await state.reserve_login_attempt({"account:alice": 1}, 0.05)
    assert await state.reserve_login_attempt({"account:alice": 1}, 0.05) is not None
    await asyncio.sleep(0.1)
    assert await state.reserve_login_attempt({"account:alice": 1}, 0.05) is None


async def test_successful_login_clears_the_account_failures_only(state):
    await state.reserve_login_attempt({"account:alice": 1, "address:a": 1}, 60)
    await state.clear_login_failures("account:alice")
    assert await state.reserve_login_attempt({"account:alice": 1}, 60) is None
    assert await state.reserve_login_attempt({"address:a": 1}, 60) is not None


async def test_revoked_token_stays_revoked(state):
    await state.revoke_token("j1", expires_at=10**10)
    assert await state.is_token_revoked("j1")
    assert not await state.is_token_revoked("j2")


async def test_revoking_a_subject_revokes_every_token_it_was_issued(state):
    await state.track_token(subject="alice", jti="a1", expires_at=10**10)
    await state.track_token(subject="alice", jti="a2", expires_at=10**10)
    await state.track_token(subject="bob", jti="b1", expires_at=10**10)
    await state.revoke_subject("alice")
    assert await state.is_token_revoked("a1")
    assert await state.is_token_revoked("a2")
    assert not await state.is_token_revoked("b1")


async def test_api_key_cache_expires_after_its_ttl(state):
    await state.cache_api_key(
        "hash", principal(), ttl=0.05, epoch=await state.api_key_cache_epoch()
    )
    assert await state.cached_api_key("hash") == principal()
    await asyncio.sleep(0.1)
    assert await state.cached_api_key("hash") is None


async def test_expiry_sweeps_keep_api_keys_that_are_still_fresh():
    state = MemoryState()
    await state.cache_api_key("hash", principal(), ttl=60, epoch=await state.api_key_cache_epoch())
    # Every write sweeps now and then; a sweep must drop only what has expired.
    for n in range(MemoryState._SWEEP_EVERY * 2):
        await state.track_token(subject="bob", jti=f"j{n}", expires_at=10**10)
    assert await state.cached_api_key("hash") == principal()


async def test_api_key_cache_with_zero_ttl_caches_nothing(state):
    await state.cache_api_key("hash", principal(), ttl=0, epoch=await state.api_key_cache_epoch())
    assert await state.cached_api_key("hash") is None


async def test_invalidating_a_user_drops_only_their_cached_keys(state):
    await state.cache_api_key(
        "h-alice", principal("alice"), ttl=60, epoch=await state.api_key_cache_epoch()
    )
    await state.cache_api_key(
        "h-bob", principal("bob"), ttl=60, epoch=await state.api_key_cache_epoch()
    )
    await state.cache_api_key(
        "h-aaron", principal("aaron"), ttl=60, epoch=await state.api_key_cache_epoch()
    )
    # A name as a request carries it: equal to the cached one, not the same object.
    await state.invalidate_api_keys("".join(["ali", "ce"]))
    assert await state.cached_api_key("h-alice") is None
    assert await state.cached_api_key("h-bob") is not None
    assert await state.cached_api_key("h-aaron") is not None


async def test_api_key_usage_counts_per_service_and_status_class(state):
    uses = [("trading", 200, 1.0), ("trading", 201, 2.0), ("market", 403, 3.0), (None, 200, 4.0)]
    for service, status, at in uses:
        await state.record_api_key_use(
            ApiKeyUse(
                key_id="k1",
                username="alice",
                service=service,
                status=status,
                client="10.0.0.9",
                at=at,
            )
        )
    [usage] = await state.api_key_usage()
    assert usage.requests == 4
    assert usage.services == {"trading": 2, "market": 1}
    assert usage.status_classes == {"2xx": 3, "4xx": 1}
    assert (usage.first_used_at, usage.last_used_at, usage.last_client) == (1.0, 4.0, "10.0.0.9")


@pytest.mark.parametrize("url", [None, "", "memory://"])
def test_unset_state_url_means_memory(url):
    assert isinstance(create_state(url), MemoryState)


@pytest.mark.parametrize("url", ["memcached://127.0.0.1:11211", "127.0.0.1:6379"])
def test_an_unsupported_state_url_refuses_start_up_naming_the_variable(url):
    with pytest.raises(StartupError, match="GATEWAY_STATE_URL"):
        create_state(url)


def test_a_redis_url_selects_the_redis_backend():
    from services.api_gateway.state.redis import RedisState

    assert isinstance(create_state("redis://127.0.0.1:6379/0"), RedisState)


async def test_an_invalidation_while_a_key_is_verified_keeps_it_out_of_the_cache(state):
    epoch = await state.api_key_cache_epoch()  # read before asking the identity service
    await state.invalidate_api_keys("alice")  # lands while the answer is on its way
    await state.cache_api_key("h-alice", principal("alice"), ttl=60, epoch=epoch)
    assert await state.cached_api_key("h-alice") is None
    # A verification that starts after the invalidation is cached as usual.
    await state.cache_api_key(
        "h-alice", principal("alice"), ttl=60, epoch=await state.api_key_cache_epoch()
    )
    assert await state.cached_api_key("h-alice") == principal("alice")


async def test_a_verification_older_than_the_tenth_invalidation_is_not_cached(state):
    # Cache epochs are compared for equality, never ordered: "...9" sorts after "...10".
    for _ in range(9):
        await state.invalidate_api_keys("alice")
    epoch = await state.api_key_cache_epoch()
    await state.invalidate_api_keys("alice")
    await state.cache_api_key("h-alice", principal("alice"), ttl=60, epoch=epoch)
    assert await state.cached_api_key("h-alice") is None
