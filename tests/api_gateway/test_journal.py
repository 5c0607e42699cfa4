"""In-process state across a gateway restart: logout revocations and API-key usage counts
are kept in the identity store and read back (the embedded default, no Redis)."""

from tests.api_gateway.conftest import running_gateway
from tests.api_gateway.test_routes import bearer, sha256_hex


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
