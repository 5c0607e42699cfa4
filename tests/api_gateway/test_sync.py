"""Identity sync: changes made in the identity store itself end live gateway access."""

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from devstack.databases import SHARED_REDIS_URL, shared_prefix
from services.api_gateway.stamps import AccessStamps
from services.api_gateway.state.memory import MemoryState
from services.api_gateway.sync import IdentitySync
from tests.api_gateway.conftest import PASSWORD, Gateway, running_gateway

SYNC_SECONDS = 0.2
# A bound on waiting for the sync, far above a couple of intervals; never a speed assertion.
PATIENCE_SECONDS = 15.0
NEW_PASSWORD = "a different correct horse staple"


async def eventually(check: Callable[[], Awaitable[bool]]) -> bool:
    """Poll `check` (yielding to the sync task) until it holds or patience runs out."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE_SECONDS
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(SYNC_SECONDS / 2)
    return await check()


async def login(gateway: Gateway, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = await gateway.client.post(
        "/auth/token", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def refused(gateway: Gateway, headers: dict[str, str], path: str = "/auth/me"):
    async def check() -> bool:
        response = await gateway.client.get(path, headers=headers)
        return response.status_code in (401, 403)

    return check


async def status(gateway: Gateway, headers: dict[str, str], path: str = "/auth/me") -> int:
    return (await gateway.client.get(path, headers=headers)).status_code


@pytest.fixture
async def synced(make_settings, keys, portfolio):
    settings = make_settings(
        portfolio_service_url=portfolio.url,
        gateway_identity_sync_seconds=SYNC_SECONDS,
        gateway_api_key_cache_seconds=300,
    )
    async with running_gateway(settings, keys.secrets()) as running:
        assert await eventually(lambda: _has_watermark(running))
        yield running


async def _has_watermark(gateway: Gateway) -> bool:
    return gateway.runtime.sync.watermark is not None


# Through the gateway, with the identity service's own facade making the changes


async def test_a_deactivation_ends_a_live_token_and_a_cached_api_key(synced, portfolio):
    name, key = portfolio.user("trading", api_key=True)
    headers = await login(synced, name)
    assert await status(synced, headers) == 200
    assert await status(synced, {"X-API-Key": key}) == 200  # now cached for 300 s
    portfolio.service.deactivate_user(name)
    assert await eventually(refused(synced, headers))
    assert await eventually(refused(synced, {"X-API-Key": key}))


async def test_a_role_change_ends_tokens_with_the_old_roles(synced, portfolio):
    name, key = portfolio.user("trading", api_key=True)
    headers = await login(synced, name)
    assert await status(synced, {"X-API-Key": key}, "/api/trading/x") == 200
    portfolio.service.set_roles(name, ["market"])
    assert await eventually(refused(synced, headers))
    # The cached key verification is dropped: the key now carries the new roles.
    assert await eventually(refused(synced, {"X-API-Key": key}, "/api/trading/x"))
    assert await status(synced, {"X-API-Key": key}, "/api/market/x") == 200
    again = await login(synced, name)
    assert await status(synced, again, "/api/market/x") == 200


async def test_a_rotated_api_key_stops_working_and_the_new_one_works(synced, portfolio):
    name, old_key = portfolio.user("trading", api_key=True)
    assert await status(synced, {"X-API-Key": old_key}) == 200
    headers = await login(synced, name)
    new_key = portfolio.service.rotate_api_key(name, secrets.token_hex(32)).api_key
    assert await eventually(refused(synced, {"X-API-Key": old_key}))
    assert await status(synced, {"X-API-Key": new_key}) == 200
    # A new key is no reason to log the user out.
    assert await status(synced, headers) == 200


async def test_a_login_after_a_password_rotation_survives_the_sync(synced, portfolio):
    name, _ = portfolio.user("trading")
    before = await login(synced, name)
    await asyncio.sleep(1.0)  # a token from an earlier second than the rotation
    portfolio.service.rotate_password(name, PASSWORD, NEW_PASSWORD)
    after = await login(synced, name, NEW_PASSWORD)
    assert await eventually(refused(synced, before))
    # The sync has applied the rotation: the token issued after it still works.
    assert await status(synced, after) == 200


async def test_sync_zero_leaves_the_task_off(make_settings, keys, portfolio):
    settings = make_settings(portfolio_service_url=portfolio.url, gateway_identity_sync_seconds=0)
    async with running_gateway(settings, keys.secrets()) as running:
        await asyncio.sleep(SYNC_SECONDS * 3)
        assert running.runtime.sync.watermark is None


# Across replicas (Redis)


async def test_a_token_issued_by_a_replica_without_sync_ends_through_another(
    make_settings, keys, portfolio
):
    name, _ = portfolio.user("trading")
    with shared_prefix() as prefix:
        shared = {
            "portfolio_service_url": portfolio.url,
            "gateway_state_url": SHARED_REDIS_URL,
            "gateway_state_prefix": prefix,
        }
        quiet = make_settings(**shared, gateway_identity_sync_seconds=0)
        syncing = make_settings(**shared, gateway_identity_sync_seconds=SYNC_SECONDS)
        async with (
            running_gateway(quiet, keys.secrets()) as one,
            running_gateway(syncing, keys.secrets()) as two,
        ):
            headers = await login(one, name)
            assert await eventually(lambda: _has_watermark(two))
            portfolio.service.deactivate_user(name)
            # Replica one never reads the feed: the revocation reaches it through Redis.
            assert await eventually(refused(one, headers))


# The identity service goes away and comes back


async def test_the_sync_logs_once_keeps_its_watermark_and_resumes(
    make_settings, keys, portfolio, restartable_identity, caplog
):
    identity = restartable_identity
    settings = make_settings(
        portfolio_service_url=identity.url, gateway_identity_sync_seconds=SYNC_SECONDS
    )
    async with running_gateway(settings, keys.secrets()) as gateway:
        name, _ = portfolio.user("trading")
        headers = await login(gateway, name)
        assert await eventually(lambda: _has_watermark(gateway))
        caplog.set_level(logging.WARNING, logger="services.api_gateway.sync")

        await asyncio.to_thread(identity.stop)
        watermark = gateway.runtime.sync.watermark
        portfolio.service.deactivate_user(name)
        await asyncio.sleep(SYNC_SECONDS * 5)
        down = [r for r in caplog.records if "cannot read" in r.getMessage()]
        assert len(down) == 1
        assert gateway.runtime.sync.watermark == watermark
        assert keys.identity_token not in caplog.text

        await asyncio.to_thread(identity.start)
        assert await eventually(refused(gateway, headers))
        assert any("again" in r.getMessage() for r in caplog.records)


async def test_a_replica_started_after_a_deactivation_still_refuses_older_tokens(
    synced, make_settings, keys, portfolio
):
    name, _ = portfolio.user("trading")
    headers = await login(synced, name)
    portfolio.service.deactivate_user(name)
    # A fresh replica has no memory of the change; it must replay the feed's recent past.
    settings = make_settings(
        portfolio_service_url=portfolio.url, gateway_identity_sync_seconds=SYNC_SECONDS
    )
    async with running_gateway(settings, keys.secrets()) as fresh:
        assert await eventually(lambda: _has_watermark(fresh))
        assert await status(fresh, headers) in (401, 403)


# Clock skew: the writer of a change an hour behind this gateway


async def test_a_change_stamped_by_a_clock_an_hour_behind_still_ends_old_tokens(synced, portfolio):
    from services.portfolio.identity import PortfolioIdentityService

    name, _ = portfolio.user("trading", "market")
    headers = await login(synced, name)
    assert await status(synced, headers) == 200
    behind = PortfolioIdentityService(
        settings=portfolio.service.settings,
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    )
    try:
        behind.set_roles(name, ["market"])
    finally:
        behind.close()
    assert await eventually(refused(synced, headers))
    # Many polls (and prunes) later it is still refused: nothing compared the two clocks.
    await asyncio.sleep(SYNC_SECONDS * 10)
    assert await status(synced, headers) == 401
    again = await login(synced, name)
    assert await status(synced, again) == 200


# Stopping


class SwallowsCancellation:
    """A double of the identity client whose first call swallows its caller's cancellation,
    as Python 3.11's `asyncio.wait_for` could deep inside a poll (no real server makes a
    library do that on demand), then fails."""

    def __init__(self) -> None:
        self.calls = 0

    async def access_changes(self, after: int | None, *, window_seconds: float | None = None):
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(3600)  # a later call waits, cancellable
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        raise RuntimeError("after a swallowed cancellation")


async def test_the_sync_stops_even_when_a_call_swallows_the_cancellation():
    identity = SwallowsCancellation()
    sync = IdentitySync(
        identity=identity,  # type: ignore[arg-type]
        authenticator=None,  # type: ignore[arg-type]  # only applies changes, none come
        state=MemoryState(),
        stamps=AccessStamps(keep_seconds=60),
        interval=0.05,
    )
    sync.start()
    while identity.calls == 0:
        await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(sync.stop())
    done, _ = await asyncio.wait({stopping}, timeout=PATIENCE_SECONDS)
    assert stopping in done, "the sync task still runs after stop()"
    assert identity.calls == 1
