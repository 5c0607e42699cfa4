"""Second factors in the identity store, on SQLite and PostgreSQL, with a clock moved by hand:
the policy, challenges, TOTP steps (replay), recovery codes, throttling, removal, reset."""

import asyncio
import secrets

import pyotp
import pytest
from pydantic import SecretStr

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import totp as totp_module
from services.portfolio.accounts.audit import AuditQuery
from services.portfolio.accounts.service import IdentityService
from services.portfolio.errors import (
    InvalidCodeError,
    InvalidInputError,
    LastFactorError,
    MfaRequiredError,
    MfaUnavailableError,
    TooManyAttemptsError,
)
from tests.portfolio.conftest import PASSWORD, Clock, env_secrets, make_settings

KEY = secrets.token_urlsafe(48)


@pytest.fixture
def mfa(database, database_url: str, clock: Clock) -> IdentityService:
    settings = make_settings(database_url, mfa_required_roles="admin")
    manager = env_secrets({totp_module.MFA_KEY_SECRET: KEY})
    return IdentityService(database, settings, secrets_manager=manager, clock=clock)


def code_at(totp: pyotp.TOTP, clock: Clock, steps: int = 0) -> str:
    return totp.at(clock.now.timestamp() + 30 * steps)


async def challenge_of(identity: IdentityService, name: str) -> MfaRequiredError:
    with pytest.raises(MfaRequiredError) as raised:
        await identity.login(name, PASSWORD)
    return raised.value


async def enrolled(identity: IdentityService, clock: Clock, name: str) -> tuple[pyotp.TOTP, list]:
    started = await identity.start_totp(name)
    totp = pyotp.TOTP(started.secret)
    confirmed = await identity.confirm_totp(name, started.factor_id, code_at(totp, clock))
    return totp, confirmed.recovery_codes


async def test_an_admin_without_a_factor_gets_an_enrolment_challenge_only(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    refused = await challenge_of(mfa, "root")
    assert refused.extra["enrolment_required"] is True
    with pytest.raises(InvalidCodeError):
        await mfa.verify_second_step(refused.extra["challenge"], code="000000")
    # A user outside the policy signs in with the password, as before.
    await mfa.create_user("trader", PASSWORD, ["trading"])
    assert (await mfa.login("trader", PASSWORD)).username == "trader"


async def test_an_empty_policy_requires_nobody(database, database_url, clock):
    identity = IdentityService(
        database, make_settings(database_url, mfa_required_roles=""), clock=clock
    )
    await identity.create_user("root", PASSWORD, ["admin"])
    assert (await identity.login("root", PASSWORD)).username == "root"


async def test_a_code_is_accepted_once_and_never_for_an_earlier_step(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    totp, codes = await enrolled(mfa, clock, "root")
    assert len(codes) == 10
    clock.advance(seconds=30)
    first = await challenge_of(mfa, "root")
    assert first.extra["methods"] == ["totp", "recovery_code"]
    code = code_at(totp, clock)
    user = await mfa.verify_second_step(first.extra["challenge"], code=code)
    assert user.username == "root"
    for replay in (code, code_at(totp, clock, -1)):
        again = await challenge_of(mfa, "root")
        with pytest.raises(InvalidCodeError):
            await mfa.verify_second_step(again.extra["challenge"], code=replay)
    # The next step's code (one step of clock drift) is still good.
    later = await challenge_of(mfa, "root")
    await mfa.verify_second_step(later.extra["challenge"], code=code_at(totp, clock, 1))


async def test_two_requests_with_the_same_code_sign_in_once(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    totp, _ = await enrolled(mfa, clock, "root")
    clock.advance(seconds=30)
    one, two = await challenge_of(mfa, "root"), await challenge_of(mfa, "root")
    code = code_at(totp, clock)
    results = await asyncio.gather(
        mfa.verify_second_step(one.extra["challenge"], code=code),
        mfa.verify_second_step(two.extra["challenge"], code=code),
        return_exceptions=True,
    )
    assert sum(not isinstance(result, Exception) for result in results) == 1
    assert sum(isinstance(result, InvalidCodeError) for result in results) == 1


async def test_a_recovery_code_signs_in_once(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    _, codes = await enrolled(mfa, clock, "root")
    first = await challenge_of(mfa, "root")
    await mfa.verify_second_step(first.extra["challenge"], recovery_code=codes[3])
    second = await challenge_of(mfa, "root")
    with pytest.raises(InvalidCodeError):
        await mfa.verify_second_step(second.extra["challenge"], recovery_code=codes[3])
    assert (await mfa.list_factors("root")).recovery_codes_left == 9


async def test_a_challenge_expires_and_is_single_use(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    _, codes = await enrolled(mfa, clock, "root")
    stale = await challenge_of(mfa, "root")
    clock.advance(seconds=301)
    with pytest.raises(InvalidCodeError):
        await mfa.verify_second_step(stale.extra["challenge"], recovery_code=codes[0])
    fresh = await challenge_of(mfa, "root")
    await mfa.verify_second_step(fresh.extra["challenge"], recovery_code=codes[0])
    with pytest.raises(InvalidCodeError):
        await mfa.verify_second_step(fresh.extra["challenge"], recovery_code=codes[1])


async def test_wrong_codes_are_throttled_like_passwords(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    totp, _ = await enrolled(mfa, clock, "root")
    clock.advance(seconds=30)
    refused = await challenge_of(mfa, "root")
    good = code_at(totp, clock)
    wrong = [f"{(int(good) + n) % 1_000_000:06d}" for n in range(1, 11)]
    results = await asyncio.gather(
        *(mfa.verify_second_step(refused.extra["challenge"], code=c) for c in wrong),
        return_exceptions=True,
    )
    assert all(isinstance(result, InvalidCodeError | TooManyAttemptsError) for result in results)
    assert sum(isinstance(result, InvalidCodeError) for result in results) <= 5
    with pytest.raises(TooManyAttemptsError):
        await mfa.verify_second_step(refused.extra["challenge"], code=good)


async def test_the_last_factor_of_an_admin_stays_and_a_reset_removes_all(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    await enrolled(mfa, clock, "root")
    factor = (await mfa.list_factors("root")).factors[0]
    with pytest.raises(LastFactorError):
        await mfa.remove_factor("root", factor.id)
    await mfa.reset_mfa("root")
    after = await mfa.list_factors("root")
    assert after.factors == []
    assert after.recovery_codes_left == 0
    assert (await challenge_of(mfa, "root")).extra["enrolment_required"] is True
    page = await audit_log.read_page(mfa.database, AuditQuery(user="root"), cursor=None, limit=50)
    assert {"mfa.enrolled", "mfa.reset"} <= {event.type for event in page.events}


async def test_totp_without_the_encryption_key_says_which_secret_is_missing(
    database, database_url, clock
):
    identity = IdentityService(
        database, make_settings(database_url), secrets_manager=env_secrets(), clock=clock
    )
    await identity.create_user("root", PASSWORD, ["admin"])
    with pytest.raises(MfaUnavailableError, match="PORTFOLIO_MFA_ENCRYPTION_KEY"):
        await identity.start_totp("root")


def test_a_sealed_secret_opens_only_with_its_key_and_for_its_account():
    box = totp_module.SecretBox(SecretStr(KEY))
    sealed = box.seal("JBSWY3DPEHPK3PXP", username="root")
    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open(sealed, username="root") == "JBSWY3DPEHPK3PXP"
    with pytest.raises(totp_module.SealError):
        box.open(sealed, username="other")
    with pytest.raises(totp_module.SealError):
        totp_module.SecretBox(SecretStr(secrets.token_urlsafe(48))).open(sealed, username="root")


async def test_a_malformed_passkey_credential_is_refused_not_a_crash(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    started = await mfa.passkey_registration_options("root")
    assert started.options["rp"]["id"] == "localhost"
    assert started.options["attestation"] == "none"
    assert started.options["authenticatorSelection"]["userVerification"] == "preferred"
    with pytest.raises(InvalidInputError, match="credential"):
        await mfa.register_passkey("root", started.handle, "not json")
    for garbage in ('{"id": "x"}', '{"id": "x", "rawId": 5, "response": []}'):
        with pytest.raises(InvalidCodeError):
            await mfa.register_passkey("root", started.handle, garbage)
    assert (await mfa.list_factors("root")).factors == []


async def events_of(identity: IdentityService, name: str) -> list[tuple[str, dict]]:
    page = await audit_log.read_page(
        identity.database, AuditQuery(user=name), cursor=None, limit=50
    )
    return [(event.type, dict(event.detail or {})) for event in reversed(page.events)]


async def test_a_password_with_a_second_factor_due_is_no_sign_in_until_the_second_step(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    totp, _ = await enrolled(mfa, clock, "root")
    clock.advance(seconds=30)
    before = len(await events_of(mfa, "root"))
    # The right password, then a wrong code: the trail shows no sign-in, nor does the user.
    refused = await challenge_of(mfa, "root")
    with pytest.raises(InvalidCodeError):
        await mfa.verify_second_step(refused.extra["challenge"], code="000000")
    events = (await events_of(mfa, "root"))[before:]
    assert [kind for kind, _ in events] == ["login.password_verified", "mfa.failed"]
    assert events[0][1] == {"second_factor": "due"}
    assert (await mfa.get_user("root")).last_login_at is None
    # The second step completes it.
    answered = await challenge_of(mfa, "root")
    await mfa.verify_second_step(answered.extra["challenge"], code=code_at(totp, clock))
    events = (await events_of(mfa, "root"))[before + 2 :]
    assert ("login.succeeded", {"second_factor": "totp"}) in events
    assert (await mfa.get_user("root")).last_login_at == clock.now


async def test_an_admin_who_must_enrol_signs_in_by_enrolling(mfa, clock):
    await mfa.create_user("root", PASSWORD, ["admin"])
    refused = await challenge_of(mfa, "root")
    assert (await events_of(mfa, "root"))[-1][0] == "login.password_verified"
    assert (await mfa.get_user("root")).last_login_at is None
    started = await mfa.start_totp("root")
    await mfa.confirm_totp(
        "root",
        started.factor_id,
        code_at(pyotp.TOTP(started.secret), clock),
        challenge=refused.extra["challenge"],
    )
    assert ("login.succeeded", {"second_factor": "totp"}) in await events_of(mfa, "root")
    assert (await mfa.get_user("root")).last_login_at == clock.now


async def test_a_sign_in_without_a_second_factor_is_audited_as_before(mfa, clock):
    await mfa.create_user("trader", PASSWORD, ["trading"])
    await mfa.login("trader", PASSWORD)
    assert (await events_of(mfa, "trader"))[-1] == ("login.succeeded", {})
    assert (await mfa.get_user("trader")).last_login_at == clock.now
