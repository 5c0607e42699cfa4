"""The authenticator's own rules: credential length limits, per-address throttling, and
ending the access obtained before a change made through this gateway."""

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from devstack.ports import free_port
from devstack.servers import ServerProcess
from services.api_gateway import auth
from services.api_gateway.accounts import IdentityUser
from services.api_gateway.app import create_app
from services.api_gateway.auth import bearer_token
from services.api_gateway.errors import InvalidToken
from tests.api_gateway.conftest import FAST_ARGON2, PASSWORD, Keys, Portfolio, running_gateway


@pytest.mark.parametrize("length", [1, 4095, 4096])
def test_a_bearer_token_of_up_to_4096_characters_is_taken(length):
    assert bearer_token("Bearer " + "t" * length) == "t" * length


@pytest.mark.parametrize("length", [4097, 10_000])
def test_a_bearer_token_longer_than_4096_characters_is_malformed(length):
    with pytest.raises(InvalidToken) as refused:
        bearer_token("Bearer " + "t" * length)
    assert str(refused.value) == "the access token is malformed"


@pytest.mark.parametrize(
    ("length", "status", "code"),
    [
        # Up to 4096 characters the identity service is asked (here it is down: 502)...
        (4096, 502, "upstream_unavailable"),
        # ...beyond, the key is refused without asking anyone.
        (4097, 401, "invalid_credentials"),
        (8000, 401, "invalid_credentials"),
    ],
)
async def test_an_api_key_longer_than_4096_characters_is_refused_unchecked(
    make_settings, keys, length, status, code
):
    settings = make_settings(portfolio_service_url=f"http://127.0.0.1:{free_port()}")
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.get("/auth/me", headers={"X-API-Key": "k" * length})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_each_client_address_has_its_own_login_attempts(make_settings, keys, portfolio):
    # One gateway, two addresses: the attempts of one never count against the other.
    name, _ = portfolio.user("trading")
    settings = make_settings(
        portfolio_service_url=portfolio.url, gateway_login_max_attempts_per_address=3
    )
    app = create_app(settings, keys.secrets())

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 1))
        return httpx.AsyncClient(transport=transport, base_url="http://gateway")

    async with (
        app.router.lifespan_context(app),
        client("198.51.100.7") as first,
        client("198.51.100.8") as second,
    ):
        for attempt in range(3):
            response = await first.post(
                "/auth/token", json={"username": f"nobody-{attempt}", "password": "wrong!"}
            )
            assert response.status_code == 401
        right = {"username": name, "password": PASSWORD}
        assert (await first.post("/auth/token", json=right)).status_code == 429
        assert (await second.post("/auth/token", json=right)).status_code == 200


async def test_a_change_made_through_this_gateway_refuses_tokens_from_before_it(gateway):
    # A token the gateway never tracked (so revoking the user's tokens cannot reach it):
    # only the stamp of the change refuses it.
    issued = gateway.runtime.tokens.issue(username="carol", roles=["trading"])
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await gateway.client.get("/api/trading/x", headers=headers)).status_code == 200
    changed = IdentityUser(
        username="carol",
        roles=("market",),
        is_active=True,
        access_changed_at=datetime.now(UTC),
        access_seq=7,
    )
    await gateway.runtime.authenticator.end_access(changed)
    response = await gateway.client.get("/api/trading/x", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "invalid_token",
        "message": "the access token predates a change to the account; log in again",
    }


# --- the identity service going away between two calls ---------------------------------
# A login needs the identity service, so each test starts its own identity process (on the
# shared test database), lets it do its part, then stops it just before the call whose
# failure the gateway must absorb: the next call to it then fails to connect.

AUDIT_WARNING = "could not audit a throttled login (UpstreamUnavailable)"
LOGOUT_WARNING = (
    "logout: the revocation holds here but was not stored in the identity store "
    "(UpstreamUnavailable); it ends with this process unless the state is shared"
)


@pytest.fixture
def own_identity(keys: Keys, portfolio: Portfolio, tmp_path: Path) -> Iterator[ServerProcess]:
    """An identity process of this test's own, on the shared test database."""
    env = {**keys.env(), **FAST_ARGON2, "PORTFOLIO_DATABASE_URL": portfolio.database_url}
    identity = ServerProcess(
        "services.portfolio.app:app", env=env, log_path=tmp_path / "identity.log"
    )
    identity.start()
    try:
        yield identity
    finally:
        identity.stop()


def _gateway_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "services.api_gateway.auth" and record.levelno == logging.WARNING
    ]


async def test_a_throttled_login_is_still_429_when_its_audit_cannot_be_stored(
    make_settings, keys, portfolio, own_identity, caplog
):
    name, _ = portfolio.user("trading")
    settings = make_settings(portfolio_service_url=own_identity.url, gateway_login_max_attempts=2)
    async with running_gateway(settings, keys.secrets()) as gateway:
        for _ in range(2):
            response = await gateway.client.post(
                "/auth/token", json={"username": name, "password": "wrong password!"}
            )
            assert response.status_code == 401, response.text
        await asyncio.to_thread(own_identity.stop)
        caplog.set_level(logging.WARNING, logger="services.api_gateway.auth")
        # The throttle refuses before any password check; auditing that refusal is the
        # only call to the identity service, and it fails.
        response = await gateway.client.post(
            "/auth/token", json={"username": name, "password": PASSWORD}
        )
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "too_many_attempts"
    assert response.headers["retry-after"]
    # The exception's type only: not the username, the address or the service token.
    assert _gateway_warnings(caplog) == [AUDIT_WARNING]
    assert keys.identity_token not in caplog.text


async def test_a_logout_the_identity_store_cannot_keep_still_revokes_the_token_here(
    make_settings, keys, portfolio, own_identity, caplog
):
    name, _ = portfolio.user("trading")
    settings = make_settings(portfolio_service_url=own_identity.url)
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.post(
            "/auth/token", json={"username": name, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        token = {"Authorization": f"Bearer {response.json()['access_token']}"}
        assert (await gateway.client.get("/auth/me", headers=token)).status_code == 200
        await asyncio.to_thread(own_identity.stop)
        caplog.set_level(logging.WARNING, logger="services.api_gateway.auth")

        logout = await gateway.client.post("/auth/logout", headers=token)
        assert logout.status_code == 204, logout.text
        assert logout.content == b""
        for path in ("/auth/me", "/api/trading/x"):
            refused = await gateway.client.get(path, headers=token)
            assert refused.status_code == 401, path
            assert refused.json()["error"] == {
                "code": "invalid_token",
                "message": "the access token has been revoked",
            }
    assert _gateway_warnings(caplog) == [LOGOUT_WARNING]
    assert token["Authorization"].split()[1] not in caplog.text
    assert keys.identity_token not in caplog.text


async def test_a_throttled_account_is_audited_again_once_the_audit_interval_has_passed(
    make_settings, keys, portfolio, monkeypatch
):
    # The interval is a minute; one second here, so the test can wait it out.
    monkeypatch.setattr(auth, "THROTTLE_AUDIT_SECONDS", 1.0)
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading")
    settings = make_settings(portfolio_service_url=portfolio.url, gateway_login_max_attempts=1)
    async with running_gateway(settings, keys.secrets()) as gateway:

        async def attempt() -> int:
            response = await gateway.client.post(
                "/auth/token", json={"username": name, "password": "wrong password!"}
            )
            return response.status_code

        async def audited() -> int:
            admin_login = await gateway.client.post(
                "/auth/token", json={"username": admin, "password": PASSWORD}
            )
            page = await gateway.client.get(
                "/admin/audit",
                params={"user": name, "type": "login.throttled"},
                headers={"Authorization": f"Bearer {admin_login.json()['access_token']}"},
            )
            return len(page.json()["events"])

        assert await attempt() == 401
        assert [await attempt(), await attempt()] == [429, 429]
        assert await audited() == 1
        await asyncio.sleep(1.2)
        assert await attempt() == 429
        assert await audited() == 2


# --- an API-key rotation made through this gateway --------------------------------------


async def test_a_key_rotation_through_this_gateway_takes_up_a_role_change_made_on_another(
    make_settings, keys, portfolio
):
    admin, _ = portfolio.user("admin")
    name, _ = portfolio.user("trading")
    # A reads the change feed once at start-up, then not for an hour; B not at all. Each
    # has its own in-process state: B's change reaches A only through the identity store.
    settings_a = make_settings(
        portfolio_service_url=portfolio.url, gateway_identity_sync_seconds=3600
    )
    settings_b = make_settings(portfolio_service_url=portfolio.url)
    async with (
        running_gateway(settings_a, keys.secrets()) as gateway_a,
        running_gateway(settings_b, keys.secrets()) as gateway_b,
    ):

        async def bearer(gateway, username: str) -> dict[str, str]:
            response = await gateway.client.post(
                "/auth/token", json={"username": username, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            return {"Authorization": f"Bearer {response.json()['access_token']}"}

        for _ in range(100):
            if gateway_a.runtime.sync.watermark is not None:
                break
            await asyncio.sleep(0.1)
        assert gateway_a.runtime.sync.watermark is not None
        old_roles = await bearer(gateway_a, name)
        assert (await gateway_a.client.get("/auth/me", headers=old_roles)).status_code == 200

        changed = await gateway_b.client.put(
            f"/admin/users/{name}/roles",
            json={"roles": ["market"]},
            headers=await bearer(gateway_b, admin),
        )
        assert changed.status_code == 200, changed.text
        # Not yet on A: its next poll of the feed is an hour away.
        assert (await gateway_a.client.get("/auth/me", headers=old_roles)).status_code == 200

        rotated = await gateway_a.client.post(
            f"/admin/users/{name}/api-key", headers=await bearer(gateway_a, admin)
        )
        assert rotated.status_code == 200, rotated.text
        # The rotation answered with the user as the identity store now has them (roles
        # market): A records that at once, and the token carrying trading is refused.
        response = await gateway_a.client.get("/auth/me", headers=old_roles)
        assert response.status_code == 401
        assert response.json()["error"] == {
            "code": "invalid_token",
            "message": "the access token predates a change to the account; log in again",
        }
        new_roles = await bearer(gateway_a, name)
        me = await gateway_a.client.get("/auth/me", headers=new_roles)
        assert me.status_code == 200
        assert me.json()["roles"] == ["market"]
