"""Passwords: logins (throttled, audited), rotations and the policy check."""

from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Any

import anyio.to_thread

from services.portfolio import metrics
from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import store
from services.portfolio.accounts.audit import SYSTEM, AuditContext, EventType, Outcome
from services.portfolio.accounts.core import IdentityCore, canonical, logger
from services.portfolio.accounts.models import UserAccount
from services.portfolio.accounts.passwords import check_password_policy
from services.portfolio.accounts.schemas import (
    User,
)
from services.portfolio.errors import (
    AccountInactiveError,
    IdentityBusyError,
    InvalidCredentialsError,
    InvalidInputError,
    PasswordExpiredError,
    PortfolioError,
    TooManyAttemptsError,
)
from shared.usernames import username_label

# A reservation refused by the database but not by the row read right after it (a login
# succeeded in between) is tried again this often before the attempt is refused.
_RESERVE_TRIES = 3


# `reason` of a `password_expired` refusal: a new account's (or a reset's) one-time
# password, rather than one that aged out.
MUST_CHANGE = "must_change_password"


class PasswordCredentials(IdentityCore):
    """Check and replace passwords."""

    async def authenticate(
        self,
        username: str,
        password: str,
        *,
        audit: AuditContext = SYSTEM,
        second_factor_due: bool = False,
    ) -> User:
        """Check a password; refuse inactive accounts and expired passwords after it checks out.

        With `second_factor_due` a good password is audited as `login.password_verified` and
        is no login yet (`last_login_at` stays): the second step completes the sign-in.
        """
        try:
            user = await self._authenticate(
                username, password, audit=audit, second_factor_due=second_factor_due
            )
        except PortfolioError as exc:
            metrics.login_outcome(exc.code)
            raise
        metrics.LOGIN_SUCCESS.inc()
        return user

    async def _authenticate(
        self, username: str, password: str, *, audit: AuditContext, second_factor_due: bool
    ) -> User:
        def stamp(account: UserAccount) -> dict[str, object]:
            return {} if second_factor_due else self._login_stamp(account)

        def event(account: UserAccount) -> tuple[EventType, Outcome, dict[str, Any]]:
            verdict = self._login_event(account)
            if second_factor_due and verdict[0] is EventType.LOGIN_SUCCEEDED:
                return EventType.LOGIN_PASSWORD_VERIFIED, Outcome.SUCCESS, {"second_factor": "due"}
            return verdict

        account = await self._check_password(
            username,
            password,
            audit=audit,
            failure_event=EventType.LOGIN_FAILED,
            on_success=stamp,
            success_event=event,
        )
        if not account.is_active:
            raise AccountInactiveError()
        if self._password_expired(account):
            if account.must_change_password:
                raise PasswordExpiredError(
                    "set your password: this account must choose its own password before "
                    "its first sign-in",
                    reason=MUST_CHANGE,
                )
            raise PasswordExpiredError(reason="expired")
        return self._user(account)

    def _login_stamp(self, account: UserAccount) -> dict[str, object]:
        # A login refused after its password checks out (inactive, expired) is no login.
        if not account.is_active or self._password_expired(account):
            return {}
        return {"last_login_at": self._clock()}

    def _login_event(self, account: UserAccount) -> tuple[EventType, Outcome, dict[str, Any]]:
        if not account.is_active:
            return EventType.LOGIN_FAILED, Outcome.FAILURE, {"reason": "account_inactive"}
        if self._password_expired(account):
            reason = "must_change_password" if account.must_change_password else "expired"
            return EventType.PASSWORD_EXPIRED, Outcome.FAILURE, {"reason": reason}
        return EventType.LOGIN_SUCCEEDED, Outcome.SUCCESS, {}

    async def record_gateway_throttle(self, username: str, *, audit: AuditContext = SYSTEM) -> None:
        """Audit a login the gateway refused by its own throttle (it never reached here)."""
        await self._record_alone(
            audit, EventType.LOGIN_THROTTLED, username_label(username), Outcome.FAILURE
        )

    async def rotate_password(
        self,
        username: str,
        current_password: str,
        new_password: str,
        *,
        audit: AuditContext = SYSTEM,
    ) -> User:
        """Replace a password after checking the current one; works on an expired password."""
        await self._check_policy(new_password, username=username, current=current_password)
        account = await self._check_password(
            username, current_password, audit=audit, failure_event=EventType.PASSWORD_ROTATED
        )
        if not account.is_active:
            raise AccountInactiveError()
        password_hash = await self._hasher.hash(new_password)
        now = self._clock()
        async with self.database.sessions.begin() as session:
            # Only over the password just checked, on a still active account: an admin's
            # reset, deactivation or deletion that committed while this one was hashing wins
            # (else a reset's one-time password would be replaced by the rotator's).
            updated = await store.update_user(
                session,
                account.username,
                expect={"password_changed_at": account.password_changed_at, "is_active": True},
                password_hash=password_hash,
                password_changed_at=now,
                must_change_password=False,
                updated_at=now,
                access_changed_at=now,
            )
            if updated is not None:
                updated = await store.record_access_change(session, updated, changed_at=now)
                await audit_log.record(
                    session, audit, EventType.PASSWORD_ROTATED, subject=account.username, at=now
                )
        if updated is None:
            raise InvalidCredentialsError()
        logger.info("rotated the password of %s", account.username)
        return self._user(updated)

    async def _check_password(
        self,
        username: str,
        password: str,
        *,
        audit: AuditContext,
        failure_event: EventType,
        on_success: Callable[[UserAccount], dict[str, object]] | None = None,
        success_event: Callable[[UserAccount], tuple[EventType, Outcome, dict[str, Any]]]
        | None = None,
    ) -> UserAccount:
        """Return the account if the password matches; count and throttle failures.

        The attempt is counted before the password is checked, not after it fails:
        otherwise every attempt arriving while the first ones are still hashing would pass
        a count that none of them has raised yet. `on_success` adds columns to the write
        that clears the count, so a login costs one commit more than before, not two.
        """
        try:
            name = canonical(username)
        except InvalidInputError:
            await self._hasher.verify_dummy(password)
            raise InvalidCredentialsError() from None
        now = self._clock()
        try:
            account = await self._reserve_attempt(name, now)
        except TooManyAttemptsError:
            await self._record_alone(audit, EventType.LOGIN_THROTTLED, name, Outcome.FAILURE)
            raise
        if account is None:
            # Always run the hasher so timing does not reveal whether the user exists.
            await self._hasher.verify_dummy(password)
            await self._record_alone(audit, failure_event, name, Outcome.FAILURE)
            raise InvalidCredentialsError()
        try:
            valid, new_hash = await self._hasher.verify(password, account.password_hash)
        except IdentityBusyError:
            # No password was checked: the attempt reserved for it is given back.
            async with self.database.sessions.begin() as session:
                await store.refund_login_attempt(session, account.username)
            raise
        if not valid:
            # The attempt was counted (and any refusal it earns begun) when it was reserved.
            delay = self._throttle.delay(account.failed_login_count)
            if delay is not None:
                logger.warning(
                    "%d consecutive failed logins for %s; refusing it for %s",
                    account.failed_login_count,
                    account.username,
                    delay,
                )
            await self._record_alone(audit, failure_event, account.username, Outcome.FAILURE)
            raise InvalidCredentialsError()
        values: dict[str, Any] = {
            "failed_login_count": 0,
            "throttled_until": None,
            **(on_success(account) if on_success is not None else {}),
        }
        if new_hash is not None:
            # A legacy bcrypt hash (or weaker Argon2 parameters): upgrade it now that we
            # hold the password.
            values["password_hash"] = new_hash
        async with self.database.sessions.begin() as session:
            # Only if the password checked is still the account's: a rotation that committed
            # while this one was hashing wins (and an upgraded old hash never overwrites the
            # new one). A deactivation shows in the row returned, which the caller checks.
            updated = await store.update_user(
                session,
                account.username,
                expect={"password_changed_at": account.password_changed_at},
                **values,
            )
            if updated is not None and success_event is not None:
                event, outcome, detail = success_event(updated)
                await audit_log.record(
                    session,
                    audit,
                    event,
                    subject=account.username,
                    at=now,
                    outcome=outcome,
                    detail=detail or None,
                )
        if updated is None:
            raise InvalidCredentialsError()
        return updated

    async def _reserve_attempt(self, name: str, now: datetime) -> UserAccount | None:
        """Count one attempt against `name` and return its account (None: no such account),
        or raise `TooManyAttemptsError` while the name is refused, counting nothing.

        Counting and the refusal the attempt would earn if it failed are one transaction,
        so concurrent attempts queue on the row and at most the threshold get through.
        """
        for _ in range(_RESERVE_TRIES):
            async with self.database.sessions.begin() as session:
                counted = await store.reserve_login_attempt(session, name, now)
                if counted is not None:
                    delay = self._throttle.delay(counted.failed_login_count)
                    if delay is None:
                        return counted
                    refused = await store.update_user(session, name, throttled_until=now + delay)
                    return refused or counted
                account = await store.get_user(session, name)
            if account is None:
                # No await between the unknown-name throttle's check and its count.
                until = self._unknown.reserve(name, now)
                if until is None:
                    return None
                raise TooManyAttemptsError((until - now).total_seconds())
            if account.throttled_until is not None and now < account.throttled_until:
                # The password is not even checked while the account is throttled.
                raise TooManyAttemptsError((account.throttled_until - now).total_seconds())
            # A login that succeeded meanwhile lifted the refusal: count against it again.
        raise TooManyAttemptsError(1)

    async def _check_policy(
        self, password: str, *, username: str, current: str | None = None
    ) -> None:
        # The strength estimate takes tens of milliseconds: never on the event loop.
        await anyio.to_thread.run_sync(
            partial(
                check_password_policy,
                password,
                self.settings,
                username=username,
                current=current,
            )
        )
