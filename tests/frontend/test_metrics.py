"""The frontend's metrics: live sessions at each scrape, session ends by cause."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from devstack.databases import SHARED_REDIS_URL, delete_prefix, unique_prefix
from services.frontend.redis_sessions import RedisSessionStore
from tests.frontend.conftest import SESSION_SECRET, Clock, Frontend, running_frontend
from tests.support.metrics import label_values, new_scrape_token, scrape, value

TOKEN = new_scrape_token()
ENDS = "frontend_session_ends_total"


@pytest.fixture
async def frontend(clock: Clock) -> AsyncIterator[Frontend]:
    async with running_frontend(clock=clock, metrics_token=TOKEN) as running:
        yield running


def moved(after, before, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_the_live_sessions_are_counted_at_each_scrape(frontend, clock):
    await frontend.signed_in(username="sybil-metrics")
    await frontend.signed_in(username="trudy-metrics")
    assert value(await scrape(frontend.client, TOKEN), "frontend_sessions_active") == 2
    clock.advance(1800)  # both idle past the timeout
    after = await scrape(frontend.client, TOKEN)
    assert value(after, "frontend_sessions_active") == 0
    assert not {"sybil-metrics", "trudy-metrics"} & label_values(after)


async def test_a_logout_is_counted_as_a_logout(frontend):
    session = await frontend.signed_in()
    before = await scrape(frontend.client, TOKEN)
    await frontend.client.post("/logout", data={"csrf_token": session.csrf_token})
    after = await scrape(frontend.client, TOKEN)
    assert moved(after, before, ENDS, cause="logout") == 1
    assert moved(after, before, ENDS, cause="expired") == 0


async def test_a_session_found_gone_after_the_idle_timeout_is_counted_as_expired(frontend, clock):
    await frontend.signed_in()
    before = await scrape(frontend.client, TOKEN)
    clock.advance(1800)
    response = await frontend.client.get("/dashboard")
    assert response.headers["location"] == "/login?expired=1"
    after = await scrape(frontend.client, TOKEN)
    assert moved(after, before, ENDS, cause="expired") == 1


async def test_metrics_are_404_without_the_token(frontend):
    unknown = await frontend.client.get("/no-such-page")
    response = await frontend.client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert response.status_code == unknown.status_code == 404
    assert response.text == unknown.text


@pytest.mark.e2e
@pytest.mark.postgres
async def test_a_real_sign_in_and_a_token_the_gateway_refuses(stack, clock):
    async with running_frontend(
        gateway_url=stack.gateway_url, clock=clock, metrics_token=TOKEN
    ) as live:
        username = stack.user("trading")
        before = await scrape(live.client, TOKEN)
        assert (await live.login(username)).headers["location"] == "/dashboard"
        session = await live.session()
        # The token is revoked behind the frontend's back: its next page ends the session.
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            revoked = await gateway.post(
                "/auth/logout", headers={"Authorization": f"Bearer {session.bearer()}"}
            )
            assert revoked.status_code in (200, 204)
        response = await live.client.get("/dashboard")
        assert response.status_code == 303
        after = await scrape(live.client, TOKEN)
    assert moved(after, before, "frontend_sessions_started_total") == 1
    assert moved(after, before, ENDS, cause="token_refused") == 1
    assert username not in label_values(after)


async def test_the_redis_store_counts_its_own_live_sessions_only():
    """A prefix with glob characters counts its own keys, not a neighbour's."""
    base = unique_prefix()
    ours, neighbour = f"{base}[a]*:", f"{base}a-:"
    stores = [
        RedisSessionStore(
            SHARED_REDIS_URL, secret=SESSION_SECRET, idle_timeout=600, lifetime=3600, prefix=prefix
        )
        for prefix in (ours, neighbour)
    ]
    try:
        for store, count in zip(stores, (2, 3), strict=True):
            for number in range(count):
                await store.create(
                    username=f"user-{number}",
                    access_token="not-a-real-token",
                    token_expires_at=4102444800.0,
                    roles=("trading",),
                    services=("trading",),
                )
        assert await stores[0].count() == 2
        assert await stores[1].count() == 3
    finally:
        for store in stores:
            await store.close()
        delete_prefix(SHARED_REDIS_URL, base)
