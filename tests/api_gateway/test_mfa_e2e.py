"""Second factor end to end: a real identity process on PostgreSQL, the gateway in-process,
codes computed here with pyotp from the secret the enrolment showed."""

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pyotp
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devstack.databases import postgres_database
from devstack.servers import ServerProcess
from tests.api_gateway.conftest import FAST_ARGON2, PASSWORD, Gateway, Keys, running_gateway

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@dataclass
class MfaStack:
    database_url: str
    service: object

    def user(self, *roles: str, api_key: bool = False) -> tuple[str, str | None]:
        name = f"mfa-{uuid.uuid4().hex[:10]}"
        self.service.create_user(name, PASSWORD, roles=list(roles))
        key = self.service.rotate_api_key(name, secrets.token_hex(32)).api_key if api_key else None
        return name, key


@pytest.fixture(scope="module")
def mfa_identity(
    keys: Keys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, MfaStack]]:
    """An identity process with the default policy (admins need a second factor)."""
    from services.portfolio.config import PortfolioSettings
    from services.portfolio.identity import PortfolioIdentityService

    log = tmp_path_factory.mktemp("mfa-portfolio") / "portfolio.log"
    with postgres_database() as database_url:
        settings = PortfolioSettings(
            database_url=database_url,
            argon2_time_cost=1,
            argon2_memory_cost=8,
            argon2_parallelism=1,
        )
        service = PortfolioIdentityService(settings=settings)
        env = {
            **keys.env(),
            **FAST_ARGON2,
            "PORTFOLIO_DATABASE_URL": database_url,
            "PORTFOLIO_MFA_REQUIRED_ROLES": "admin",
            "PORTFOLIO_MFA_ENCRYPTION_KEY": secrets.token_urlsafe(48),
        }
        try:
            with ServerProcess("services.portfolio.app:app", env=env, log_path=log) as process:
                yield process.url, MfaStack(database_url=database_url, service=service)
        finally:
            service.close()


@pytest.fixture
async def gw(make_settings, keys: Keys, mfa_identity) -> AsyncIterator[Gateway]:
    url, _ = mfa_identity
    settings = make_settings(portfolio_service_url=url, portfolio_mfa_required_roles="admin")
    async with running_gateway(settings, keys.secrets()) as running:
        yield running


@pytest.fixture
def stack(mfa_identity) -> MfaStack:
    return mfa_identity[1]


async def password_step(client: httpx.AsyncClient, name: str) -> dict:
    response = await client.post("/auth/token", json={"username": name, "password": PASSWORD})
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "mfa_required"
    return error


async def enrol(client: httpx.AsyncClient, name: str) -> tuple[pyotp.TOTP, list[str], str]:
    """Sign in as an admin without a factor: enrol with the challenge; return the TOTP, the
    recovery codes and the token the enrolment completed the sign-in with."""
    error = await password_step(client, name)
    assert error["enrolment_required"] is True
    started = await client.post("/auth/mfa/totp", json={"challenge": error["challenge"]})
    assert started.status_code == 200, started.text
    body = started.json()
    totp = pyotp.TOTP(body["secret"])
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    confirmed = await client.post(
        "/auth/mfa/totp/confirm",
        json={"challenge": error["challenge"], "factor_id": body["factor_id"], "code": totp.now()},
    )
    assert confirmed.status_code == 200, confirmed.text
    done = confirmed.json()
    return totp, done["recovery_codes"], done["token"]["access_token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admin_without_a_factor_gets_no_token_only_an_enrolment_challenge(gw, stack):
    name, _ = stack.user("admin")
    error = await password_step(gw.client, name)
    assert error["enrolment_required"] is True
    assert set(error["methods"]) == {"totp", "passkey"}
    assert 0 < error["expires_in"] <= 300
    # The enrolment challenge is no second step: it signs nobody in.
    refused = await gw.client.post(
        "/auth/token", json={"challenge": error["challenge"], "code": "123456"}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_credentials"
    # Nor is it a token.
    me = await gw.client.get("/auth/me", headers=bearer(error["challenge"]))
    assert me.status_code == 401


async def test_enrolment_completes_the_sign_in_and_shows_ten_recovery_codes_once(gw, stack):
    name, _ = stack.user("admin")
    _totp, codes, token = await enrol(gw.client, name)
    assert len(codes) == 10
    assert len(set(codes)) == 10
    me = await gw.client.get("/auth/me", headers=bearer(token))
    assert me.status_code == 200
    assert me.json()["username"] == name
    factors = (await gw.client.get("/auth/mfa", headers=bearer(token))).json()
    assert [factor["kind"] for factor in factors["factors"]] == ["totp"]
    assert factors["recovery_codes_left"] == 10
    assert factors["required"] is True


async def test_totp_second_step_issues_a_token_and_a_replayed_code_is_refused(gw, stack):
    name, _ = stack.user("admin")
    totp, _, _ = await enrol(gw.client, name)
    error = await password_step(gw.client, name)
    assert error["enrolment_required"] is False
    assert error["methods"] == ["totp", "recovery_code"]
    # The enrolment took the current step: the next code is the following step's.
    code = totp.at(time.time() + 30)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = await gw.client.post(
        "/auth/token", json={"challenge": error["challenge"], "code": wrong}
    )
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_credentials"
    ok = await gw.client.post("/auth/token", json={"challenge": error["challenge"], "code": code})
    assert ok.status_code == 200, ok.text
    token = ok.json()["access_token"]
    assert (await gw.client.get("/auth/me", headers=bearer(token))).json()["username"] == name
    # The challenge was single use.
    again = await gw.client.post(
        "/auth/token", json={"challenge": error["challenge"], "code": code}
    )
    assert again.status_code == 401
    # The same code (and an earlier step's) with a fresh challenge: a replay, refused.
    for replay in (code, totp.now()):
        fresh = await password_step(gw.client, name)
        replayed = await gw.client.post(
            "/auth/token", json={"challenge": fresh["challenge"], "code": replay}
        )
        assert replayed.status_code == 401, replay


def counted(name: str, **labels: str) -> float:
    """A counter of this process's gateway (the gateway runs in-process here)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_second_steps_are_counted_as_logins_in_the_metrics(gw, stack):
    name, _ = stack.user("admin")
    totp, _, _ = await enrol(gw.client, name)
    error = await password_step(gw.client, name)
    auth, throttle = "gateway_authentications_total", "gateway_throttle_decisions_total"
    cases = {
        "failed": (auth, {"method": "password", "outcome": "invalid_credentials"}),
        "succeeded": (auth, {"method": "password", "outcome": "success"}),
        "allowed": (throttle, {"operation": "login", "decision": "allowed"}),
        "rotation": (throttle, {"operation": "password_rotation", "decision": "allowed"}),
    }
    before = {case: counted(metric, **labels) for case, (metric, labels) in cases.items()}
    code = totp.at(time.time() + 30)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    challenge = error["challenge"]
    refused = await gw.client.post("/auth/token", json={"challenge": challenge, "code": wrong})
    assert refused.status_code == 401
    ok = await gw.client.post("/auth/token", json={"challenge": challenge, "code": code})
    assert ok.status_code == 200, ok.text
    moved = {
        case: counted(metric, **labels) - before[case] for case, (metric, labels) in cases.items()
    }
    assert moved == {"failed": 1.0, "succeeded": 1.0, "allowed": 2.0, "rotation": 0.0}


async def test_a_recovery_code_works_once(gw, stack):
    name, _ = stack.user("admin")
    _, codes, _ = await enrol(gw.client, name)
    error = await password_step(gw.client, name)
    ok = await gw.client.post(
        "/auth/token", json={"challenge": error["challenge"], "recovery_code": codes[0].upper()}
    )
    assert ok.status_code == 200, ok.text
    error = await password_step(gw.client, name)
    again = await gw.client.post(
        "/auth/token", json={"challenge": error["challenge"], "recovery_code": codes[0]}
    )
    assert again.status_code == 401
    token = ok.json()["access_token"]
    assert (await gw.client.get("/auth/mfa", headers=bearer(token))).json()[
        "recovery_codes_left"
    ] == 9


async def test_concurrent_wrong_codes_are_throttled_per_account(gw, stack):
    name, _ = stack.user("admin")
    totp, _, _ = await enrol(gw.client, name)
    error = await password_step(gw.client, name)
    good = totp.at(time.time() + 30)
    wrongs = [f"{(int(good) + n) % 1_000_000:06d}" for n in range(1, 21)]
    answers = await asyncio.gather(
        *(
            gw.client.post("/auth/token", json={"challenge": error["challenge"], "code": code})
            for code in wrongs
        )
    )
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {401, 429}
    # The identity service's threshold (5) counts atomically: no more get a verdict.
    assert statuses.count(401) <= 5
    assert statuses.count(429) >= 15
    # Throttled: even the right code is refused now.
    refused = await gw.client.post(
        "/auth/token", json={"challenge": error["challenge"], "code": good}
    )
    assert refused.status_code == 429


async def test_users_outside_the_policy_and_api_keys_are_unchanged(gw, stack):
    trader, _ = stack.user("trading")
    ok = await gw.client.post("/auth/token", json={"username": trader, "password": PASSWORD})
    assert ok.status_code == 200, ok.text
    _admin, key = stack.user("admin", api_key=True)
    me = await gw.client.get("/auth/me", headers={"X-API-Key": key})
    assert me.status_code == 200
    assert me.json()["auth_method"] == "api_key"
    # An API key may not touch its person's second factors.
    assert (await gw.client.get("/auth/mfa", headers={"X-API-Key": key})).status_code == 403


async def test_the_last_factor_of_an_admin_cannot_be_removed_and_an_admin_can_reset(gw, stack):
    name, _ = stack.user("admin")
    _, _, token = await enrol(gw.client, name)
    factor = (await gw.client.get("/auth/mfa", headers=bearer(token))).json()["factors"][0]
    refused = await gw.client.delete(f"/auth/mfa/{factor['id']}", headers=bearer(token))
    assert refused.status_code == 409
    assert "last second factor" in refused.json()["error"]["message"]
    operator, _ = stack.user("admin")
    _, _, admin_token = await enrol(gw.client, operator)
    reset = await gw.client.post(f"/admin/users/{name}/mfa/reset", headers=bearer(admin_token))
    assert reset.status_code == 200, reset.text
    # The user's token ended; the next sign-in must enrol again.
    assert (await gw.client.get("/auth/me", headers=bearer(token))).status_code == 401
    assert (await password_step(gw.client, name))["enrolment_required"] is True
    audit = await gw.client.get("/admin/audit", params={"user": name}, headers=bearer(admin_token))
    types = {event["type"] for event in audit.json()["events"]}
    assert {"mfa.enrolled", "mfa.reset"} <= types


async def test_a_non_admin_may_remove_their_only_factor(gw, stack):
    name, _ = stack.user("trading")
    ok = await gw.client.post("/auth/token", json={"username": name, "password": PASSWORD})
    token = ok.json()["access_token"]
    started = (await gw.client.post("/auth/mfa/totp", json={}, headers=bearer(token))).json()
    totp = pyotp.TOTP(started["secret"])
    confirmed = await gw.client.post(
        "/auth/mfa/totp/confirm",
        json={"factor_id": started["factor_id"], "code": totp.now()},
        headers=bearer(token),
    )
    assert confirmed.status_code == 200
    assert len(confirmed.json()["recovery_codes"]) == 10
    # From now on the password alone is not enough for this user either.
    assert (await password_step(gw.client, name))["enrolment_required"] is False
    removed = await gw.client.delete(f"/auth/mfa/{started['factor_id']}", headers=bearer(token))
    assert removed.status_code == 200
    assert removed.json()["factors"] == []
    again = await gw.client.post("/auth/token", json={"username": name, "password": PASSWORD})
    assert again.status_code == 200


async def test_secrets_and_challenges_are_never_stored_in_clear(gw, stack):
    name, _ = stack.user("admin")
    error = await password_step(gw.client, name)
    started = (
        await gw.client.post("/auth/mfa/totp", json={"challenge": error["challenge"]})
    ).json()
    engine = create_async_engine(stack.database_url)
    try:
        async with engine.connect() as conn:
            sealed = (
                await conn.execute(
                    text("SELECT secret_sealed FROM mfa_factors WHERE username = :u"), {"u": name}
                )
            ).scalar_one()
            hashes = (
                (
                    await conn.execute(
                        text("SELECT id_hash FROM mfa_challenges WHERE username = :u"), {"u": name}
                    )
                )
                .scalars()
                .all()
            )
    finally:
        await engine.dispose()
    assert started["secret"] not in sealed
    assert sealed.startswith("v1:")
    assert hashlib.sha256(error["challenge"].encode()).hexdigest() in hashes
    assert error["challenge"] not in hashes


async def test_the_openapi_document_describes_the_second_step(gw):
    document = (await gw.client.get("/openapi.json")).json()
    token = document["paths"]["/auth/token"]["post"]
    assert "mfa_required" in str(token["responses"]["401"])
    for path in ("/auth/mfa", "/auth/mfa/totp", "/auth/mfa/totp/confirm", "/auth/mfa/{factor_id}"):
        assert path in document["paths"]
    assert "/admin/users/{username}/mfa/reset" in document["paths"]
