"""The in-process state: bounded (every 1024th operation drops what has expired), exact at
its time boundaries, and its API-key usage counts as the journal takes and restores them."""

import asyncio
from types import SimpleNamespace

import pytest

from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.state import ApiKeyUsage, ApiKeyUse, MemoryState, StateCondition, memory
from shared.clock import epoch_seconds


def principal(username: str) -> Principal:
    return Principal(username=username, roles=("trading",), auth_method=AuthMethod.API_KEY)


async def test_expired_entries_are_dropped_at_the_1024th_operation_and_live_ones_kept():
    state = MemoryState()
    now = epoch_seconds()
    await state.revoke_token("old-jti", now - 1)
    await state.revoke_token("live-jti", now + 600)
    await state.track_token(subject="gone", jti="gone-jti", expires_at=now - 1)  # op 1
    await state.track_token(subject="kept", jti="kept-jti", expires_at=now + 600)  # op 2
    epoch = await state.api_key_cache_epoch()
    await state.cache_api_key("stale-hash", principal("stale"), 0.01, epoch=epoch)  # op 3
    await state.cache_api_key("fresh-hash", principal("fresh"), 600, epoch=epoch)  # op 4
    await state.reserve_login_attempt({"account:stale": 5}, 0.01)  # op 5
    await state.reserve_login_attempt({"account:fresh": 5}, 600)  # op 6
    await asyncio.sleep(0.05)
    for n in range(1017):  # ops 7 to 1023: no sweep yet
        await state.track_token(subject="kept", jti=f"more-{n}", expires_at=now + 600)
    assert await state.is_token_revoked("old-jti")
    assert "gone" in state._issued
    assert "stale-hash" in state._api_keys
    assert "account:stale" in state._failures

    await state.track_token(subject="kept", jti="last", expires_at=now + 600)  # op 1024
    assert not await state.is_token_revoked("old-jti")
    assert await state.is_token_revoked("live-jti")
    assert "gone" not in state._issued
    assert len(state._issued["kept"]) == 1019
    assert list(state._api_keys) == ["fresh-hash"]
    assert list(state._failures) == ["account:fresh"]
    assert (await state.cached_api_key("fresh-hash")) == principal("fresh")
    # The user still tracked has their tokens revoked as one.
    await state.revoke_subject("kept")
    assert await state.is_token_revoked("kept-jti")


def use(at: float, *, service: str | None = "trading", status: int = 200, **overrides) -> ApiKeyUse:
    fields = {"key_id": "k1", "username": "alice", "client": "10.0.0.9", **overrides}
    return ApiKeyUse(service=service, status=status, at=at, **fields)


def usage(**fields) -> ApiKeyUsage:
    return ApiKeyUsage(**{"key_id": "k1", "username": "alice", **fields})


async def test_the_journal_takes_only_the_counts_made_since_its_last_take():
    state = MemoryState()
    await state.record_api_key_use(use(1.0))  # before a journal: in the totals only
    state.journaled = True
    await state.record_api_key_use(use(2.0, status=404))
    await state.record_api_key_use(use(3.0, service="market"))
    [taken] = state.take_usage_counts()
    assert (taken.requests, taken.services, taken.status_classes) == (
        2,
        {"trading": 1, "market": 1},
        {"4xx": 1, "2xx": 1},
    )
    assert (taken.first_used_at, taken.last_used_at) == (2.0, 3.0)
    assert state.take_usage_counts() == []
    [total] = await state.api_key_usage()
    assert total.requests == 3


async def test_a_state_no_journal_saves_keeps_no_unsaved_counts():
    # The fallback of a Redis state: nothing would ever take them, so they are not kept.
    state = MemoryState()
    await state.record_api_key_use(use(1.0))
    assert state.take_usage_counts() == []


async def test_stored_counts_read_back_add_to_what_this_process_counted():
    state = MemoryState()
    state.journaled = True
    await state.record_api_key_use(use(50.0, service="market", status=500, client="10.0.0.1"))
    stored = usage(
        username="alice-renamed-before",
        requests=8,
        services={"trading": 5, "market": 3},
        status_classes={"2xx": 6, "4xx": 1, "5xx": 1},
        first_used_at=10.0,
        last_used_at=40.0,
        last_client="10.0.0.7",
    )
    state.restore_usage_counts([stored], unsaved=False)
    [total] = await state.api_key_usage()
    assert total.requests == 9
    assert total.services == {"trading": 5, "market": 4}
    assert total.status_classes == {"2xx": 6, "4xx": 1, "5xx": 2}
    # The first use is the stored one's; the last use (and who, from where) stays this one's.
    assert (total.first_used_at, total.last_used_at) == (10.0, 50.0)
    assert (total.username, total.last_client) == ("alice", "10.0.0.1")
    # Read back from the store, so not saved again: only this process's count is taken.
    [taken] = state.take_usage_counts()
    assert taken.requests == 1


async def test_a_stored_count_newer_than_this_process_brings_its_last_use_and_client():
    state = MemoryState()
    await state.record_api_key_use(use(5.0, client="10.0.0.1"))
    state.restore_usage_counts(
        [usage(username="bob", requests=2, first_used_at=3.0, last_used_at=9.0, last_client="c2")],
        unsaved=False,
    )
    [total] = await state.api_key_usage()
    assert (total.first_used_at, total.last_used_at) == (3.0, 9.0)
    assert (total.username, total.last_client) == ("bob", "c2")
    assert total.requests == 3


async def test_counts_that_could_not_be_saved_are_taken_again_not_counted_twice():
    state = MemoryState()
    state.journaled = True
    await state.record_api_key_use(use(1.0))
    await state.record_api_key_use(use(2.0))
    taken = state.take_usage_counts()
    await state.record_api_key_use(use(3.0, service="market"))
    state.restore_usage_counts(taken, unsaved=True)  # the save failed
    [again] = state.take_usage_counts()
    assert (again.requests, again.services) == (3, {"trading": 2, "market": 1})
    assert (again.first_used_at, again.last_used_at) == (1.0, 3.0)
    [total] = await state.api_key_usage()
    assert (total.requests, total.services) == (3, {"trading": 2, "market": 1})


async def test_a_stored_count_is_copied_not_shared():
    state = MemoryState()
    stored = usage(requests=1, services={"trading": 1}, status_classes={"2xx": 1})
    state.restore_usage_counts([stored], unsaved=False)
    await state.record_api_key_use(use(5.0, service="trading", status=200))
    assert (stored.requests, stored.services, stored.status_classes) == (
        1,
        {"trading": 1},
        {"2xx": 1},
    )


async def test_usage_lists_the_most_recently_used_key_first():
    state = MemoryState()
    for key_id, at in (("old", 1.0), ("newest", 9.0), ("middle", 5.0)):
        await state.record_api_key_use(use(at, key_id=key_id))
    assert [u.key_id for u in await state.api_key_usage()] == ["newest", "middle", "old"]


async def test_revocations_made_before_a_restart_are_taken_up_while_they_live():
    state = MemoryState()
    now = epoch_seconds()
    state.restore_revocations({"live": now + 600, "expired": now - 1})
    assert await state.is_token_revoked("live")
    assert not await state.is_token_revoked("expired")


class Clock:
    """The wall and monotonic clocks the state reads, moved by the test: exact boundaries."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(memory, "epoch_seconds", clock)
    monkeypatch.setattr(memory, "time", SimpleNamespace(monotonic=clock))
    return clock


async def test_a_cached_api_key_is_served_until_its_ttl_and_not_at_it(clock):
    state = MemoryState()
    await state.cache_api_key("hash", principal("a"), 30, epoch=await state.api_key_cache_epoch())
    clock.now = 1_029.5
    assert await state.cached_api_key("hash") == principal("a")
    clock.now = 1_030.0
    assert await state.cached_api_key("hash") is None


async def test_a_new_throttle_window_starts_at_the_exact_end_of_the_last(clock):
    state = MemoryState()
    limits = {"account:alice": 1}
    assert await state.reserve_login_attempt(limits, 60) is None
    clock.now = 1_059.5
    assert await state.reserve_login_attempt(limits, 60) == 0.5
    clock.now = 1_060.0
    assert await state.reserve_login_attempt(limits, 60) is None
    # That attempt opened a window of its own: a second one at the same instant waits it out.
    assert await state.reserve_login_attempt(limits, 60) == 60.0


async def test_the_wait_is_that_of_the_key_whose_window_ends_last(clock):
    state = MemoryState()
    await state.reserve_login_attempt({"account:alice": 1}, 60)  # until 1060
    clock.now = 1_030.0
    await state.reserve_login_attempt({"address:a": 1}, 60)  # until 1090
    clock.now = 1_040.0
    both = {"account:alice": 1, "address:a": 1}
    assert await state.reserve_login_attempt(both, 60) == 50.0
    assert state.login_wait(both, 1_040.0) == 50.0
    assert state.login_wait({"account:alice": 1}, 1_040.0) == 20.0
    assert state.login_wait({"account:alice": 2}, 1_040.0) is None


def test_the_memory_backend_describes_itself_for_readyz():
    assert MemoryState().condition() == StateCondition(
        backend="memory", available=True, detail="in this process"
    )


async def test_status_classes_are_the_hundreds_of_the_status():
    state = MemoryState()
    for status in (100, 199, 200, 299, 404, 500, 599):
        await state.record_api_key_use(use(1.0, status=status))
    [total] = await state.api_key_usage()
    assert total.status_classes == {"1xx": 2, "2xx": 2, "4xx": 1, "5xx": 2}


async def test_a_revocation_ending_at_the_restart_is_not_taken_up(clock):
    # As the sweep drops it: a token is revoked until, not at, its expiry.
    state = MemoryState()
    state.restore_revocations({"ends-now": 1_000.0, "ends-later": 1_000.5})
    assert not await state.is_token_revoked("ends-now")
    assert await state.is_token_revoked("ends-later")


async def test_the_sweep_drops_what_ends_at_its_exact_time(clock):
    state = MemoryState()
    await state.revoke_token("ends-then", 2_000.0)
    await state.revoke_token("ends-later", 2_000.5)
    await state.track_token(subject="gone", jti="g", expires_at=2_000.0)  # op 1
    await state.track_token(subject="kept", jti="k", expires_at=2_000.5)  # op 2
    epoch = await state.api_key_cache_epoch()
    await state.cache_api_key("ends-then", principal("a"), 1_000, epoch=epoch)  # op 3
    await state.cache_api_key("ends-later", principal("b"), 1_000.5, epoch=epoch)  # op 4
    clock.now = 1_940.0
    await state.reserve_login_attempt({"account:a": 5}, 60)  # until 2000, op 5
    clock.now = 2_000.0
    for n in range(MemoryState._SWEEP_EVERY - 5):  # up to the sweeping op
        await state.track_token(subject="kept", jti=f"k{n}", expires_at=2_000.5)
    assert not await state.is_token_revoked("ends-then")
    assert await state.is_token_revoked("ends-later")
    assert "gone" not in state._issued
    assert len(state._issued["kept"]) == MemoryState._SWEEP_EVERY - 4
    assert list(state._api_keys) == ["ends-later"]
    assert state._failures == {}


async def test_every_1024th_operation_sweeps_not_only_the_first(clock):
    state = MemoryState()
    for n in range(MemoryState._SWEEP_EVERY):
        await state.track_token(subject="a", jti=f"a{n}", expires_at=1_500.0)
    await state.revoke_token("second-round", 1_500.0)
    clock.now = 1_600.0
    for n in range(MemoryState._SWEEP_EVERY - 1):
        await state.track_token(subject="b", jti=f"b{n}", expires_at=9_000.0)
    assert await state.is_token_revoked("second-round")
    await state.track_token(subject="b", jti="last", expires_at=9_000.0)  # op 2048
    assert not await state.is_token_revoked("second-round")
    assert "a" not in state._issued
