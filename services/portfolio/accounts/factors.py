"""Second factors: the policy, challenges, TOTP enrolment and checks, recovery codes."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import store, totp
from services.portfolio.accounts.audit import SYSTEM, AuditContext, EventType, Outcome
from services.portfolio.accounts.core import canonical, logger
from services.portfolio.accounts.credentials import PasswordCredentials
from services.portfolio.accounts.models import MfaChallenge, RecoveryCode, SecondFactor
from services.portfolio.accounts.schemas import (
    FactorOut,
    FactorsOut,
    TotpConfirmed,
    TotpEnrolment,
    User,
)
from services.portfolio.errors import (
    AccountInactiveError,
    InvalidCodeError,
    InvalidInputError,
    LastFactorError,
    MfaRequiredError,
    MfaUnavailableError,
    TooManyAttemptsError,
    UserNotFoundError,
)
from shared.secrets import SecretsError
from shared.usernames import username_label

LOGIN = "login"
ENROL = "enrol"
TOTP = "totp"
PASSKEY = "passkey"
RECOVERY_CODE = "recovery_code"
CHALLENGE_GONE = "the challenge is unknown, used or expired; sign in again"


class Refused(Exception):
    """A second step refused inside its transaction: everything it took is rolled back."""


def rows_changed(result: Any) -> int:
    return result.rowcount if isinstance(result, CursorResult) else 0


async def take_challenge(session: AsyncSession, digest: str, purpose: str, now: datetime) -> bool:
    # One statement: of two requests answering one challenge, one deletes it.
    result = await session.execute(
        delete(MfaChallenge).where(
            MfaChallenge.id_hash == digest,
            MfaChallenge.purpose == purpose,
            MfaChallenge.expires_at > now,
        )
    )
    return rows_changed(result) == 1


class SecondFactors(PasswordCredentials):
    """Sign-in with a second factor after the password, and the factors' lifecycle."""

    # --- the policy and the second step ---------------------------------------------

    def requires_mfa(self, roles: list[str]) -> bool:
        """Tell whether holders of `roles` must sign in with a second factor."""
        return bool(self.settings.mfa_roles() & set(roles))

    async def login(self, username: str, password: str, *, audit: AuditContext = SYSTEM) -> User:
        """Check the password; return the user when no second factor is due, else raise
        `MfaRequiredError` with a challenge (to answer, or only to enrol with)."""
        # Read before the password check, so that check audits the right event: a good
        # password with a second factor due is no sign-in yet.
        async with self.database.sessions() as session:
            known = await store.get_user(session, username_label(username))
            due = known is not None and (
                bool(await _confirmed_kinds(session, known.username))
                or self.requires_mfa(list(known.roles))
            )
        user = await self.authenticate(username, password, audit=audit, second_factor_due=due)
        async with self.database.sessions() as session:
            kinds = await _confirmed_kinds(session, user.username)
            codes = await unused_codes(session, user.username)
        if not kinds and not self.requires_mfa(user.roles):
            return user
        enrol = not kinds
        challenge = await self._challenge(user.username, ENROL if enrol else LOGIN)
        if enrol:
            methods = [TOTP, PASSKEY]
            message = (
                "a second factor is required for this account and none is enrolled: enrol "
                "one with this challenge; it allows nothing else"
            )
        else:
            methods = sorted(kinds) + ([RECOVERY_CODE] if codes else [])
            message = "a second factor is required: answer the challenge with a code"
        raise MfaRequiredError(
            message,
            challenge=challenge,
            methods=methods,
            expires_in=self.settings.mfa_challenge_seconds,
            enrol=enrol,
        )

    async def _challenge(self, username: str, purpose: str, webauthn: str | None = None) -> str:
        challenge, digest = totp.new_challenge()
        now = self._clock()
        async with self.database.sessions.begin() as session:
            # Expired challenges go as new ones come: the table stays small.
            await session.execute(delete(MfaChallenge).where(MfaChallenge.expires_at <= now))
            session.add(
                MfaChallenge(
                    id_hash=digest,
                    username=username,
                    purpose=purpose,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.settings.mfa_challenge_seconds),
                    webauthn_challenge=webauthn,
                )
            )
        return challenge

    async def challenge_owner(self, challenge: str, purpose: str) -> MfaChallenge:
        """Return the live challenge of that purpose, or raise `InvalidCodeError`."""
        async with self.database.sessions() as session:
            found = await session.get(MfaChallenge, totp.challenge_digest(challenge))
        if found is None or found.purpose != purpose or found.expires_at <= self._clock():
            raise InvalidCodeError(CHALLENGE_GONE)
        return found

    async def verify_second_step(
        self,
        challenge: str,
        *,
        code: str | None = None,
        recovery_code: str | None = None,
        audit: AuditContext = SYSTEM,
    ) -> User:
        """Answer a login challenge with a TOTP code or a recovery code; return the user.

        Throttled like a password (the same per-account count, taken before the check);
        the challenge, the TOTP step and the recovery code are each used once, atomically.
        """
        if (code is None) == (recovery_code is None):
            raise InvalidInputError("give either code or recovery_code")
        owner = await self.challenge_owner(challenge, LOGIN)
        name = owner.username
        account = await self._reserve_for_code(name, audit)
        method = TOTP if code is not None else RECOVERY_CODE
        box = await self._box() if code is not None else None
        now = self._clock()
        try:
            async with self.database.sessions.begin() as session:
                if box is not None:
                    used = await self._use_totp(session, box, name, code or "", now)
                else:
                    used = await _use_recovery_code(session, name, recovery_code or "", now)
                if not used:
                    raise Refused("invalid code")
                if not await take_challenge(session, owner.id_hash, LOGIN, now):
                    raise Refused(CHALLENGE_GONE)  # answered by a concurrent request
                await self._signed_in(session, audit, name, now, method)
                event = EventType.MFA_USED if code is not None else EventType.MFA_RECOVERY_CODE_USED
                await audit_log.record(
                    session, audit, event, subject=name, at=now, detail={"method": method}
                )
        except Refused as refused:
            # Rolled back: a step or recovery code taken in the refused transaction stays.
            await self._record_alone(audit, EventType.MFA_FAILED, name, Outcome.FAILURE)
            raise InvalidCodeError(str(refused)) from None
        if not account.is_active or account.deleted_at is not None:
            raise AccountInactiveError()
        return self._user(account)

    async def _signed_in(
        self, session: AsyncSession, audit: AuditContext, name: str, now: datetime, method: str
    ) -> None:
        """Complete a sign-in whose password step was `login.password_verified`."""
        await store.update_user(
            session, name, failed_login_count=0, throttled_until=None, last_login_at=now
        )
        await audit_log.record(
            session,
            audit,
            EventType.LOGIN_SUCCEEDED,
            subject=name,
            at=now,
            detail={"second_factor": method},
        )

    async def _reserve_for_code(self, name: str, audit: AuditContext) -> Any:
        try:
            account = await self._reserve_attempt(name, self._clock())
        except TooManyAttemptsError:
            await self._record_alone(audit, EventType.LOGIN_THROTTLED, name, Outcome.FAILURE)
            raise
        if account is None:
            raise InvalidCodeError(CHALLENGE_GONE)
        return account

    async def _use_totp(
        self, session: AsyncSession, box: totp.SecretBox, name: str, code: str, now: datetime
    ) -> bool:
        factors = await session.scalars(
            select(SecondFactor).where(
                SecondFactor.username == name,
                SecondFactor.kind == TOTP,
                SecondFactor.confirmed_at.is_not(None),
            )
        )
        for factor in factors.all():
            if await self._take_step(session, box, factor, code, now):
                return True
        return False

    async def _take_step(
        self,
        session: AsyncSession,
        box: totp.SecretBox,
        factor: SecondFactor,
        code: str,
        now: datetime,
    ) -> bool:
        """Accept `code` for `factor` once: only a step later than the last one accepted."""
        try:
            secret = box.open(factor.secret_sealed or "", username=factor.username)
        except totp.SealError:
            logger.error("the TOTP secret of %s does not open with the MFA key", factor.username)
            return False
        step = totp.matching_step(secret, code, now=now.timestamp())
        if step is None:
            return False
        # One statement: of two requests with the same code, only one moves the step.
        result = await session.execute(
            update(SecondFactor)
            .where(
                SecondFactor.id == factor.id,
                (SecondFactor.last_step.is_(None)) | (SecondFactor.last_step < step),
            )
            .values(last_step=step, last_used_at=now)
        )
        return rows_changed(result) == 1

    async def _box(self) -> totp.SecretBox:
        try:
            async with self._secrets_manager() as manager:
                key = await manager.get(totp.MFA_KEY_SECRET)
        except SecretsError:
            key = None
        if key is None:
            raise MfaUnavailableError(
                f"TOTP needs the managed secret {totp.MFA_KEY_SECRET}; it is not configured"
            )
        return totp.SecretBox(key)

    # --- enrolment ---------------------------------------------------------------------

    async def enrolling_user(
        self, *, username: str | None = None, challenge: str | None = None
    ) -> str:
        """Return who enrols: the signed-in user, or the owner of an enrolment challenge."""
        if (username is None) == (challenge is None):
            raise InvalidInputError("give either username or challenge")
        if challenge is not None:
            return (await self.challenge_owner(challenge, ENROL)).username
        return canonical(username or "")

    async def start_totp(self, username: str, *, label: str = "Authenticator app") -> TotpEnrolment:
        """Begin a TOTP enrolment: a pending factor holding a new secret (sealed)."""
        name = canonical(username)
        box = await self._box()
        secret = totp.new_secret()
        now = self._clock()
        async with self.database.sessions.begin() as session:
            if await store.get_user(session, name) is None:
                raise UserNotFoundError(name)
            # One pending enrolment per user: a new start replaces the one before.
            await session.execute(
                delete(SecondFactor).where(
                    SecondFactor.username == name, SecondFactor.confirmed_at.is_(None)
                )
            )
            factor = SecondFactor(
                username=name,
                kind=TOTP,
                label=label,
                secret_sealed=box.seal(secret, username=name),
                created_at=now,
            )
            session.add(factor)
            await session.flush()
            factor_id = factor.id
        uri = totp.provisioning_uri(secret, username=name, issuer=self.settings.mfa_issuer)
        return TotpEnrolment(factor_id=factor_id, secret=secret, otpauth_uri=uri)

    async def confirm_totp(
        self,
        username: str,
        factor_id: int,
        code: str,
        *,
        challenge: str | None = None,
        audit: AuditContext = SYSTEM,
    ) -> TotpConfirmed:
        """Confirm a pending TOTP enrolment with its first code (throttled like a login).

        Returns the recovery codes, this once, when the user had none left; with an
        enrolment challenge the challenge is used up and the user may now sign in.
        """
        name = canonical(username)
        account = await self._reserve_for_code(name, audit)
        box = await self._box()
        now = self._clock()
        codes: list[str] = []
        try:
            async with self.database.sessions.begin() as session:
                factor = await session.get(SecondFactor, factor_id)
                pending = factor is not None and (
                    factor.username == name and factor.kind == TOTP and factor.confirmed_at is None
                )
                if (
                    factor is None
                    or not pending
                    or not await self._take_step(session, box, factor, code, now)
                ):
                    raise Refused("invalid code: enter the code your app shows now")
                if challenge is not None and not await take_challenge(
                    session, totp.challenge_digest(challenge), ENROL, now
                ):
                    raise Refused(CHALLENGE_GONE)
                await session.execute(
                    update(SecondFactor)
                    .where(SecondFactor.id == factor_id)
                    .values(confirmed_at=now, last_used_at=now)
                )
                if not await unused_codes(session, name):
                    codes = await replace_recovery_codes(session, name, now)
                if challenge is not None:
                    await self._signed_in(session, audit, name, now, TOTP)
                else:
                    await store.update_user(
                        session, name, failed_login_count=0, throttled_until=None
                    )
                await audit_log.record(
                    session,
                    audit,
                    EventType.MFA_ENROLLED,
                    subject=name,
                    at=now,
                    detail={"kind": TOTP, "factor": factor_id, "recovery_codes": len(codes)},
                )
        except Refused as refused:
            await self._record_alone(audit, EventType.MFA_FAILED, name, Outcome.FAILURE)
            raise InvalidCodeError(str(refused)) from None
        logger.info("%s enrolled a TOTP factor", name)
        return TotpConfirmed(factor_id=factor_id, recovery_codes=codes, user=self._user(account))

    # --- listing, removal, reset -------------------------------------------------------

    async def list_factors(self, username: str) -> FactorsOut:
        """Return a user's confirmed factors, recovery codes left and whether MFA is due."""
        name = canonical(username)
        async with self.database.sessions() as session:
            account = await store.get_user(session, name)
            if account is None:
                raise UserNotFoundError(name)
            rows = await session.scalars(
                select(SecondFactor)
                .where(SecondFactor.username == name, SecondFactor.confirmed_at.is_not(None))
                .order_by(SecondFactor.id)
            )
            factors = [
                FactorOut(
                    id=row.id,
                    kind=row.kind,
                    label=row.label,
                    created_at=row.created_at,
                    last_used_at=row.last_used_at,
                )
                for row in rows.all()
            ]
            left = await unused_codes(session, name)
        return FactorsOut(
            factors=factors, recovery_codes_left=left, required=self.requires_mfa(account.roles)
        )

    async def remove_factor(
        self, username: str, factor_id: int, *, audit: AuditContext = SYSTEM
    ) -> FactorsOut:
        """Remove one of a user's factors; never the last of an account that requires one."""
        name = canonical(username)
        now = self._clock()
        async with self.database.sessions.begin() as session:
            account = await store.get_user(session, name)
            factor = await session.get(SecondFactor, factor_id)
            if account is None or factor is None or factor.username != name:
                raise UserNotFoundError(f"{name}: no factor {factor_id}")
            others = [kind for kind in await _confirmed_list(session, name) if kind[0] != factor_id]
            if not others and self.requires_mfa(account.roles):
                raise LastFactorError(
                    "this is the account's last second factor and its role requires one: "
                    "enrol another factor first"
                )
            await session.execute(delete(SecondFactor).where(SecondFactor.id == factor_id))
            if not others:
                # No factor left: the recovery codes recover nothing any more.
                await session.execute(delete(RecoveryCode).where(RecoveryCode.username == name))
            await audit_log.record(
                session,
                audit,
                EventType.MFA_REMOVED,
                subject=name,
                at=now,
                detail={"kind": factor.kind, "factor": factor_id},
            )
        return await self.list_factors(name)

    async def reset_mfa(self, username: str, *, audit: AuditContext = SYSTEM) -> User:
        """Remove every factor, recovery code and challenge of a user; their live access
        ends and they enrol again at their next sign-in (if their role requires it)."""

        async def wipe(session: AsyncSession, name: str) -> None:
            await session.execute(delete(SecondFactor).where(SecondFactor.username == name))
            await session.execute(delete(RecoveryCode).where(RecoveryCode.username == name))
            await session.execute(delete(MfaChallenge).where(MfaChallenge.username == name))

        return await self._update(username, audit, EventType.MFA_RESET, also=wipe)


async def _confirmed_list(session: AsyncSession, name: str) -> list[tuple[int, str]]:
    rows = await session.execute(
        select(SecondFactor.id, SecondFactor.kind).where(
            SecondFactor.username == name, SecondFactor.confirmed_at.is_not(None)
        )
    )
    return [(row[0], row[1]) for row in rows.all()]


async def _confirmed_kinds(session: AsyncSession, name: str) -> set[str]:
    return {kind for _, kind in await _confirmed_list(session, name)}


async def unused_codes(session: AsyncSession, name: str) -> int:
    rows = await session.scalars(
        select(RecoveryCode.code_hash).where(
            RecoveryCode.username == name, RecoveryCode.used_at.is_(None)
        )
    )
    return len(rows.all())


async def replace_recovery_codes(session: AsyncSession, name: str, now: datetime) -> list[str]:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.username == name))
    codes = totp.new_recovery_codes()
    session.add_all(
        RecoveryCode(code_hash=totp.recovery_digest(code), username=name, created_at=now)
        for code in codes
    )
    return codes


async def _use_recovery_code(session: AsyncSession, name: str, code: str, now: datetime) -> bool:
    # One statement: a code used by a concurrent request is not found unused here.
    result = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.code_hash == totp.recovery_digest(code),
            RecoveryCode.username == name,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return rows_changed(result) == 1
