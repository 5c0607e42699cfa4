"""Passkeys (WebAuthn): registration and authentication ceremonies, attestation `none`, user
verification preferred, relying party from the settings."""

import json
from datetime import datetime
from typing import Any

import webauthn
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from webauthn.helpers import bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import store, totp
from services.portfolio.accounts.audit import SYSTEM, AuditContext, EventType, Outcome
from services.portfolio.accounts.core import canonical, logger
from services.portfolio.accounts.factors import (
    CHALLENGE_GONE,
    ENROL,
    LOGIN,
    PASSKEY,
    Refused,
    SecondFactors,
    replace_recovery_codes,
    rows_changed,
    take_challenge,
    unused_codes,
)
from services.portfolio.accounts.models import MfaChallenge, SecondFactor
from services.portfolio.accounts.schemas import PasskeyOptions, PasskeyRegistered, User
from services.portfolio.errors import InvalidCodeError, InvalidInputError, UserNotFoundError

REGISTER = "passkey_register"
_MAX_CREDENTIAL_CHARS = 64_000


def _parse(credential: str) -> dict[str, Any]:
    if len(credential) > _MAX_CREDENTIAL_CHARS:
        raise InvalidInputError("credential: too long for a WebAuthn credential")
    try:
        parsed = json.loads(credential)
    except ValueError:
        raise InvalidInputError("credential: must be the JSON of a WebAuthn credential") from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("id"), str):
        raise InvalidInputError("credential: must be the JSON of a WebAuthn credential")
    return parsed


class Passkeys(SecondFactors):
    """Register passkeys and sign in with them."""

    async def passkey_registration_options(self, username: str) -> PasskeyOptions:
        """Return the options of a registration ceremony and the handle naming it."""
        name = canonical(username)
        async with self.database.sessions() as session:
            if await store.get_user(session, name) is None:
                raise UserNotFoundError(name)
            existing = await _passkeys(session, name)
        options = webauthn.generate_registration_options(
            rp_id=self.settings.webauthn_rp_id,
            rp_name=self.settings.webauthn_rp_name,
            user_name=name,
            user_id=name.encode(),
            attestation=AttestationConveyancePreference.NONE,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            ),
            exclude_credentials=[
                PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(row.credential_id))
                for row in existing
                if row.credential_id
            ],
        )
        handle = await self._challenge(name, REGISTER, bytes_to_base64url(options.challenge))
        return PasskeyOptions(handle=handle, options=json.loads(webauthn.options_to_json(options)))

    async def register_passkey(
        self,
        username: str,
        handle: str,
        credential: str,
        *,
        label: str = "Passkey",
        challenge: str | None = None,
        audit: AuditContext = SYSTEM,
    ) -> PasskeyRegistered:
        """Verify a registration ceremony and keep the passkey; with an enrolment challenge,
        use it up (the sign-in completes). Recovery codes come back once, as for TOTP."""
        name = canonical(username)
        parsed = _parse(credential)
        owner = await self.challenge_owner(handle, REGISTER)
        if owner.username != name or owner.webauthn_challenge is None:
            raise InvalidCodeError(CHALLENGE_GONE)
        try:
            verified = webauthn.verify_registration_response(
                credential=parsed,
                expected_challenge=webauthn.base64url_to_bytes(owner.webauthn_challenge),
                expected_rp_id=self.settings.webauthn_rp_id,
                expected_origin=self.settings.webauthn_origin_list(),
            )
        except WebAuthnException as exc:
            await self._record_alone(audit, EventType.MFA_FAILED, name, Outcome.FAILURE)
            raise InvalidCodeError(f"the passkey registration failed: {exc}") from None
        now = self._clock()
        codes: list[str] = []
        try:
            async with self.database.sessions.begin() as session:
                if not await take_challenge(session, owner.id_hash, REGISTER, now):
                    raise Refused(CHALLENGE_GONE)
                if challenge is not None and not await take_challenge(
                    session, totp.challenge_digest(challenge), ENROL, now
                ):
                    raise Refused(CHALLENGE_GONE)
                factor = SecondFactor(
                    username=name,
                    kind=PASSKEY,
                    label=label,
                    credential_id=bytes_to_base64url(verified.credential_id),
                    public_key=bytes_to_base64url(verified.credential_public_key),
                    sign_count=verified.sign_count,
                    created_at=now,
                    confirmed_at=now,
                )
                session.add(factor)
                await session.flush()
                if not await unused_codes(session, name):
                    codes = await replace_recovery_codes(session, name, now)
                await audit_log.record(
                    session,
                    audit,
                    EventType.MFA_ENROLLED,
                    subject=name,
                    at=now,
                    detail={"kind": PASSKEY, "factor": factor.id, "recovery_codes": len(codes)},
                )
                factor_id = factor.id
                account = await store.get_user(session, name)
        except Refused as refused:
            raise InvalidCodeError(str(refused)) from None
        if account is None:
            raise UserNotFoundError(name)
        logger.info("%s registered a passkey", name)
        return PasskeyRegistered(
            factor_id=factor_id, recovery_codes=codes, user=self._user(account)
        )

    async def passkey_login_options(self, challenge: str) -> dict[str, Any]:
        """Return the options of an authentication ceremony answering a login challenge."""
        owner = await self.challenge_owner(challenge, LOGIN)
        async with self.database.sessions.begin() as session:
            keys = await _passkeys(session, owner.username)
            if not keys:
                raise InvalidInputError("this account has no passkey: use a code")
            options = webauthn.generate_authentication_options(
                rp_id=self.settings.webauthn_rp_id,
                allow_credentials=[
                    PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(row.credential_id))
                    for row in keys
                    if row.credential_id
                ],
                user_verification=UserVerificationRequirement.PREFERRED,
            )
            # The ceremony's challenge rides on the login challenge: answered once, with it.
            await session.execute(
                update(MfaChallenge)
                .where(MfaChallenge.id_hash == owner.id_hash)
                .values(webauthn_challenge=bytes_to_base64url(options.challenge))
            )
        parsed: dict[str, Any] = json.loads(webauthn.options_to_json(options))
        return parsed

    async def verify_passkey(
        self, challenge: str, credential: str, *, audit: AuditContext = SYSTEM
    ) -> User:
        """Answer a login challenge with a passkey assertion; throttled like a code."""
        parsed = _parse(credential)
        owner = await self.challenge_owner(challenge, LOGIN)
        name = owner.username
        account = await self._reserve_for_code(name, audit)
        now = self._clock()
        try:
            async with self.database.sessions.begin() as session:
                factor = (
                    await session.scalars(
                        select(SecondFactor).where(
                            SecondFactor.username == name,
                            SecondFactor.kind == PASSKEY,
                            SecondFactor.credential_id == parsed["id"],
                        )
                    )
                ).one_or_none()
                if factor is None or owner.webauthn_challenge is None:
                    raise Refused("unknown passkey")
                try:
                    verified = webauthn.verify_authentication_response(
                        credential=parsed,
                        expected_challenge=webauthn.base64url_to_bytes(owner.webauthn_challenge),
                        expected_rp_id=self.settings.webauthn_rp_id,
                        expected_origin=self.settings.webauthn_origin_list(),
                        credential_public_key=webauthn.base64url_to_bytes(factor.public_key or ""),
                        credential_current_sign_count=factor.sign_count or 0,
                    )
                except WebAuthnException as exc:
                    raise Refused(f"the passkey did not check out: {exc}") from None
                if not await _count_use(session, factor, verified.new_sign_count, now):
                    raise Refused("the passkey's signature counter went backwards")
                if not await take_challenge(session, owner.id_hash, LOGIN, now):
                    raise Refused(CHALLENGE_GONE)
                await self._signed_in(session, audit, name, now, PASSKEY)
                await audit_log.record(
                    session,
                    audit,
                    EventType.MFA_USED,
                    subject=name,
                    at=now,
                    detail={"method": PASSKEY},
                )
        except Refused as refused:
            await self._record_alone(audit, EventType.MFA_FAILED, name, Outcome.FAILURE)
            raise InvalidCodeError(str(refused)) from None
        return self._user(account)


async def _passkeys(session: AsyncSession, name: str) -> list[SecondFactor]:
    rows = await session.scalars(
        select(SecondFactor).where(
            SecondFactor.username == name,
            SecondFactor.kind == PASSKEY,
            SecondFactor.confirmed_at.is_not(None),
        )
    )
    return list(rows.all())


async def _count_use(
    session: AsyncSession, factor: SecondFactor, new_count: int, now: datetime
) -> bool:
    """Record the use; a counter that does not grow (when the authenticator keeps one) is a
    cloned key. One statement, so two concurrent uses cannot both pass."""
    statement = update(SecondFactor).where(SecondFactor.id == factor.id)
    if new_count > 0 or (factor.sign_count or 0) > 0:
        statement = statement.where(SecondFactor.sign_count < new_count)
    result = await session.execute(statement.values(sign_count=new_count, last_used_at=now))
    return rows_changed(result) == 1
