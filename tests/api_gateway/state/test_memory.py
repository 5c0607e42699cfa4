"""The in-process state stays bounded: every 1024th operation drops what has expired."""

import asyncio

from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.state import MemoryState
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
