"""The gateway's metrics move with real traffic: proxied calls, failures, auth, state."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from devstack.ports import free_port
from tests.api_gateway.conftest import running_gateway
from tests.support.metrics import label_values, new_scrape_token, scrape, value

TOKEN = new_scrape_token()
PROXIED = {"route": "/api/{service}/{path}", "method": "GET"}


@pytest.fixture
def secrets(keys):
    return dataclasses.replace(keys.secrets(), metrics_scrape_token=TOKEN)


def moved(after, before, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


class TestProxiedCalls:
    async def test_a_proxied_call_is_counted_by_template_timed_per_service_and_cached(
        self, make_settings, secrets
    ):
        async with running_gateway(make_settings(), secrets) as gateway:
            headers = gateway.bearer("alice", "trading")
            before = await scrape(gateway.client, TOKEN)
            for order in ("1", "2"):
                response = await gateway.client.get(f"/api/trading/orders/{order}", headers=headers)
                assert response.status_code == 200
            after = await scrape(gateway.client, TOKEN)
        assert moved(after, before, "http_requests_total", **PROXIED, status="2xx") == 2
        timer = "gateway_upstream_request_duration_seconds_count"
        assert moved(after, before, timer, service="trading") == 2
        assert moved(after, before, timer, service="market") == 0
        auth = "gateway_authentications_total"
        assert moved(after, before, auth, method="jwt", outcome="success") == 2
        cache = "gateway_cache_lookups_total"
        assert moved(after, before, cache, cache="token", result="miss") == 1
        assert moved(after, before, cache, cache="token", result="hit") == 1
        labels = label_values(after)
        assert not {"alice", "127.0.0.1", "/api/trading/orders/1"} & labels

    async def test_an_unreachable_service_is_counted_502_unreachable(self, make_settings, secrets):
        settings = make_settings(market_service_url=f"http://127.0.0.1:{free_port()}")
        async with running_gateway(settings, secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            response = await gateway.client.get(
                "/api/market/prices", headers=gateway.bearer("bob", "market")
            )
            assert response.status_code == 502
            after = await scrape(gateway.client, TOKEN)
        errors = "gateway_upstream_errors_total"
        assert (
            moved(after, before, errors, service="market", status="502", cause="unreachable") == 1
        )
        assert moved(after, before, "http_requests_total", **PROXIED, status="5xx") == 1

    async def test_a_slow_service_is_counted_504_timeout(self, make_settings, secrets):
        settings = make_settings(gateway_upstream_timeout_seconds=0.3)
        async with running_gateway(settings, secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            response = await gateway.client.get(
                "/api/strategy/slow/2", headers=gateway.bearer("carol", "strategy")
            )
            assert response.status_code == 504
            after = await scrape(gateway.client, TOKEN)
        errors = "gateway_upstream_errors_total"
        assert moved(after, before, errors, service="strategy", status="504", cause="timeout") == 1


class TestAuthentication:
    async def test_a_bad_token_is_counted_by_its_reason(self, make_settings, secrets):
        async with running_gateway(make_settings(), secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            response = await gateway.client.get(
                "/api/trading/x", headers={"Authorization": "Bearer not.a.token"}
            )
            assert response.status_code == 401
            after = await scrape(gateway.client, TOKEN)
        auth = "gateway_authentications_total"
        assert moved(after, before, auth, method="jwt", outcome="invalid_token") == 1
        assert moved(after, before, auth, method="jwt", outcome="success") == 0

    async def test_a_logout_is_counted_as_a_revocation(self, make_settings, secrets):
        async with running_gateway(make_settings(), secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            response = await gateway.client.post("/auth/logout", headers=gateway.bearer("dan"))
            assert response.status_code in (200, 204)
            after = await scrape(gateway.client, TOKEN)
        assert moved(after, before, "gateway_revocations_total", kind="token") == 1

    @pytest.mark.postgres
    async def test_api_keys_are_cached_once_verified(self, make_settings, secrets, portfolio):
        username, key = portfolio.user("trading", api_key=True)
        settings = make_settings(portfolio_service_url=portfolio.url)
        async with running_gateway(settings, secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            for _ in range(3):
                response = await gateway.client.get("/api/trading/a", headers={"X-API-Key": key})
                assert response.status_code == 200
            after = await scrape(gateway.client, TOKEN)
        cache = "gateway_cache_lookups_total"
        assert moved(after, before, cache, cache="api_key", result="miss") == 1
        assert moved(after, before, cache, cache="api_key", result="hit") == 2
        auth = "gateway_authentications_total"
        assert moved(after, before, auth, method="api_key", outcome="success") == 3
        assert username not in label_values(after)
        assert key not in label_values(after)


class TestLogins:
    @pytest.mark.postgres
    async def test_wrong_passwords_are_counted_and_the_throttle_refusal_too(
        self, make_settings, secrets, portfolio
    ):
        username, _ = portfolio.user("trading")
        settings = make_settings(portfolio_service_url=portfolio.url, gateway_login_max_attempts=2)
        wrong = {"username": username, "password": "not the password at all"}
        async with running_gateway(settings, secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            statuses = [
                (await gateway.client.post("/auth/token", json=wrong)).status_code for _ in range(3)
            ]
            after = await scrape(gateway.client, TOKEN)
        assert statuses == [401, 401, 429]
        throttle = "gateway_throttle_decisions_total"
        assert moved(after, before, throttle, operation="login", decision="allowed") == 2
        assert moved(after, before, throttle, operation="login", decision="refused") == 1
        auth = "gateway_authentications_total"
        password = {"method": "password"}
        assert moved(after, before, auth, **password, outcome="invalid_credentials") == 2
        assert moved(after, before, auth, **password, outcome="too_many_attempts") == 1
        assert moved(after, before, auth, **password, outcome="success") == 0
        assert username not in label_values(after)


class TestIdentityFeed:
    FEED = "gateway_identity_feed_polls_total"
    LAST = "gateway_identity_feed_last_success_timestamp_seconds"

    async def polled(self, gateway, before, outcome: str, times: int):
        """Scrape until the feed has been polled `times` more times with `outcome`."""
        deadline = time.monotonic() + 15
        while True:
            after = await scrape(gateway.client, TOKEN)
            if moved(after, before, self.FEED, outcome=outcome) >= times:
                return after
            assert time.monotonic() < deadline, f"the feed was not polled {times} times"
            await asyncio.sleep(0.1)

    @pytest.mark.postgres
    async def test_polls_are_counted_and_the_last_success_stamped(
        self, make_settings, secrets, portfolio
    ):
        settings = make_settings(
            portfolio_service_url=portfolio.url, gateway_identity_sync_seconds=0.2
        )
        async with running_gateway(settings, secrets) as gateway:
            started = time.time()
            before = await scrape(gateway.client, TOKEN)
            after = await self.polled(gateway, before, "ok", 3)
        assert moved(after, before, self.FEED, outcome="failed") == 0
        # The feed's lag is time() minus this: it was read to its end just now.
        assert started - 1 <= value(after, self.LAST) <= time.time()

    async def test_a_failing_poll_is_counted_and_leaves_the_last_success(
        self, make_settings, secrets
    ):
        settings = make_settings(
            portfolio_service_url=f"http://127.0.0.1:{free_port()}",
            gateway_identity_sync_seconds=0.2,
        )
        async with running_gateway(settings, secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            after = await self.polled(gateway, before, "failed", 2)
        assert moved(after, before, self.FEED, outcome="ok") == 0
        assert value(after, self.LAST) == value(before, self.LAST)


class TestSharedState:
    async def test_redis_down_shows_as_down_and_calls_fall_back(self, make_settings, secrets):
        settings = make_settings(gateway_state_url=f"redis://127.0.0.1:{free_port()}/0")
        async with running_gateway(settings, secrets) as gateway:
            before = await scrape(gateway.client, TOKEN)
            response = await gateway.client.get(
                "/api/trading/x", headers=gateway.bearer("erin", "trading")
            )
            assert response.status_code == 200
            after = await scrape(gateway.client, TOKEN)
        assert value(after, "gateway_shared_state_up", backend="redis") == 0
        # The revocation check of the bearer request, answered from memory.
        assert moved(after, before, "gateway_shared_state_fallbacks_total") >= 1
