"""In-process state across a gateway restart: logout revocations and API-key usage counts
are kept in the identity store and read back (the embedded default, no Redis)."""

import asyncio
import logging

import pytest

from tests.api_gateway.conftest import running_gateway
from tests.api_gateway.test_routes import bearer, sha256_hex

TICK_SECONDS = 0.1


async def test_usage_counts_and_logouts_survive_a_restart(make_settings, keys, portfolio):
    # Saved at shutdown and read back at start only: no timing in the test.
    settings = make_settings(
        portfolio_service_url=portfolio.url, gateway_state_journal_seconds=3600
    )
    admin, _ = portfolio.user("admin")
    name, key = portfolio.user("trading", api_key=True)
    async with running_gateway(settings, keys.secrets()) as first:
        for path in ("/api/trading/a", "/api/trading/b", "/auth/me"):
            await first.client.get(path, headers={"X-API-Key": key})
        token = await bearer(first, name)
        assert (await first.client.post("/auth/logout", headers=token)).status_code == 204
        assert (await first.client.get("/auth/me", headers=token)).status_code == 401

    async with running_gateway(settings, keys.secrets()) as second:
        assert (await second.client.get("/auth/me", headers=token)).status_code == 401
        await second.client.get("/api/trading/c", headers={"X-API-Key": key})
        usage = await second.client.get(
            "/admin/api-keys/usage", headers=await bearer(second, admin)
        )
        [entry] = [e for e in usage.json()["keys"] if e["key_id"] == sha256_hex(key)[:16]]
        assert entry["requests"] == 4
        assert entry["services"] == {"trading": 3}
        assert entry["status_classes"] == {"2xx": 4}

    async with running_gateway(settings, keys.secrets()) as third:
        usage = await third.client.get("/admin/api-keys/usage", headers=await bearer(third, admin))
        [entry] = [e for e in usage.json()["keys"] if e["key_id"] == sha256_hex(key)[:16]]
        assert entry["requests"] == 4  # read back, not counted twice


async def test_without_the_journal_a_restart_forgets_them(make_settings, keys, portfolio):
    # The same steps with the journal off: what the test above checks is the journal's work.
    settings = make_settings(portfolio_service_url=portfolio.url)
    name, _ = portfolio.user("trading")
    async with running_gateway(settings, keys.secrets()) as first:
        token = await bearer(first, name)
        assert (await first.client.post("/auth/logout", headers=token)).status_code == 204
    async with running_gateway(settings, keys.secrets()) as second:
        assert (await second.client.get("/auth/me", headers=token)).status_code == 200


async def test_a_logout_is_audited(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading")
    token = await bearer(identity_gateway, name)
    await identity_gateway.client.post("/auth/logout", headers=token)
    page = await identity_gateway.client.get(
        "/admin/audit",
        params={"user": name, "type": "token.revoked"},
        headers=await bearer(identity_gateway, admin),
    )
    [event] = page.json()["events"]
    assert (event["actor"], event["subject"], event["outcome"]) == (name, name, "success")
    assert token["Authorization"].split()[1] not in page.text


async def test_the_usage_page_lists_every_key_used_or_not(identity_gateway, portfolio):
    admin, _ = portfolio.user("admin")
    name, key = portfolio.user("market", api_key=True)
    usage = await identity_gateway.client.get(
        "/admin/api-keys/usage", headers=await bearer(identity_gateway, admin)
    )
    [entry] = [e for e in usage.json()["keys"] if e["username"] == name]
    assert entry["key_id"] == sha256_hex(key)[:16]
    assert entry["requests"] == 0
    assert entry["first_used_at"] is None
    assert entry["last_used_at"] is None


async def test_an_outage_is_one_warning_and_counts_made_in_it_are_saved_after(
    make_settings, keys, portfolio, restartable_identity, caplog
):
    identity = restartable_identity
    settings = make_settings(
        portfolio_service_url=identity.url, gateway_state_journal_seconds=TICK_SECONDS
    )
    _, key = portfolio.user("trading", api_key=True)
    async with running_gateway(settings, keys.secrets()) as gateway:
        caplog.set_level(logging.WARNING, logger="services.api_gateway.journal")
        # The key is verified once by the identity store, then served from the cache.
        used = await gateway.client.get("/api/trading/a", headers={"X-API-Key": key})
        assert used.status_code == 200
        await asyncio.to_thread(identity.stop)
        # Counted while the identity store is down: kept until a save works.
        used = await gateway.client.get("/api/trading/b", headers={"X-API-Key": key})
        assert used.status_code == 200
        await asyncio.sleep(TICK_SECONDS * 15)
        warnings = journal_lines(caplog)
        assert len(warnings) == 1, warnings
        assert "the identity store is unreachable" in warnings[0]
        assert "retrying every 0.1 s" in warnings[0]

        await asyncio.to_thread(identity.start)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while loop.time() < deadline and len(journal_lines(caplog)) < 2:
            await asyncio.sleep(TICK_SECONDS)
        assert journal_lines(caplog)[1:] == ["state journal: the identity store answers again"]
        # "Again" is logged once a tick, its save included, went through.
        saved = await gateway.runtime.identity.stored_usage()
        [entry] = [e for e in saved if e.key_id == sha256_hex(key)[:16]]
        assert entry.requests == 2


def journal_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "services.api_gateway.journal"]
