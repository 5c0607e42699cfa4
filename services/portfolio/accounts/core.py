"""What every part of the identity service shares: the database, the clock, the hasher,
and how an account is shown, changed and audited."""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import store
from services.portfolio.accounts.audit import AuditContext, EventType, Outcome
from services.portfolio.accounts.models import UserAccount
from services.portfolio.accounts.passwords import PasswordHasher
from services.portfolio.accounts.schemas import (
    User,
)
from services.portfolio.accounts.throttle import Throttle, UnknownNameThrottle
from services.portfolio.config import PortfolioSettings
from services.portfolio.db import Database
from services.portfolio.errors import (
    AccountDeletedError,
    InvalidInputError,
    LastAdminError,
    UserNotFoundError,
)
from shared.clock import Clock, utcnow
from shared.roles import Role, UnknownRoleError, parse_roles
from shared.secrets import SecretsManager
from shared.usernames import InvalidUsernameError, normalize_username

logger = logging.getLogger("services.portfolio.identity")


def canonical(username: str) -> str:
    """Return the canonical form of a username, or raise `InvalidInputError`."""
    try:
        return normalize_username(username)
    except InvalidUsernameError as exc:
        raise InvalidInputError(str(exc)) from None


def checked_roles(roles: Iterable[str]) -> list[str]:
    """Return the role names, or raise `InvalidInputError` naming an unknown one."""
    if isinstance(roles, str):
        raise InvalidInputError("roles must be a list of role names, not one string")
    try:
        return [str(role) for role in parse_roles(roles)]
    except UnknownRoleError as exc:
        raise InvalidInputError(str(exc)) from None


def _is_admin(is_active: bool, roles: list[str], deleted_at: datetime | None) -> bool:
    return is_active and deleted_at is None and Role.ADMIN.value in roles


class IdentityCore:
    """Users and their credentials, over one database: the state the parts share."""

    def __init__(
        self,
        database: Database,
        settings: PortfolioSettings,
        *,
        secrets_manager: SecretsManager | None = None,
        clock: Clock = utcnow,
        hasher: PasswordHasher | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self._secrets = secrets_manager
        self._clock = clock
        self._hasher = hasher or PasswordHasher(settings)
        self._throttle = Throttle.from_settings(settings)
        self._unknown = UnknownNameThrottle(self._throttle)

    @asynccontextmanager
    async def _secrets_manager(self) -> AsyncIterator[SecretsManager]:
        """Yield the service's secrets manager, or one opened for this call only."""
        if self._secrets is not None:
            yield self._secrets
            return
        manager = SecretsManager.from_environment(service="portfolio")
        try:
            yield manager
        finally:
            await manager.aclose()

    def now(self) -> datetime:
        """Return this service's clock's time."""
        return self._clock()

    async def _update(
        self,
        username: str,
        audit: AuditContext,
        event: EventType,
        detail: dict[str, Any] | None = None,
        *,
        also: Callable[[AsyncSession, str], Awaitable[None]] | None = None,
        **values: Any,
    ) -> User:
        """Change an account, end its live access (the feed) and audit it, in one transaction;
        refuse a deleted account, and a change that would leave no active admin."""
        name = canonical(username)
        now = self._clock()
        async with self.database.sessions.begin() as session:
            await store.lock_admins(session, name)
            before = await store.get_user(session, name)
            if before is None:
                raise UserNotFoundError(name)
            if before.deleted_at is not None:
                raise AccountDeletedError(name)
            was_admin = _is_admin(before.is_active, before.roles, before.deleted_at)
            stays_admin = _is_admin(
                values.get("is_active", before.is_active),
                values.get("roles", before.roles),
                values.get("deleted_at", before.deleted_at),
            )
            if was_admin and not stays_admin and await store.count_active_admins(session) <= 1:
                raise LastAdminError(name)
            # Every `_update` ends live access: stamp it for the feed.
            updated = await store.update_user(
                session, name, updated_at=now, access_changed_at=now, **values
            )
            if updated is None:  # locked by this transaction since it was read
                raise UserNotFoundError(name)
            updated = await store.record_access_change(session, updated, changed_at=now)
            if also is not None:
                await also(session, name)
            await audit_log.record(session, audit, event, subject=name, at=now, detail=detail)
        logger.info("updated %s of %s", ", ".join(sorted(values)), name)
        return self._user(updated)

    async def _record_alone(
        self, audit: AuditContext, event: EventType, subject: str, outcome: Outcome
    ) -> None:
        """Record an event that changes nothing else (a refused attempt) in its own commit.

        A name without an account is not recorded: it may be a password typed into the
        username field, and the trail must never hold one.
        """
        async with self.database.sessions.begin() as session:
            known = await store.get_user(session, subject) is not None
            await audit_log.record(
                session,
                audit,
                event,
                subject=subject if known else None,
                at=self._clock(),
                outcome=outcome,
                detail=None if known else {"account": "unknown"},
            )

    def _password_expired(self, account: UserAccount) -> bool:
        expires_at = self._password_expires_at(account)
        return expires_at is not None and self._clock() >= expires_at

    def _password_expires_at(self, account: UserAccount) -> datetime | None:
        if account.must_change_password:
            return account.password_changed_at
        days = self.settings.password_rotation_days
        if days == 0:
            return None
        return account.password_changed_at + timedelta(days=days)

    def _user(self, account: UserAccount) -> User:
        return User(
            username=account.username,
            roles=list(account.roles),
            is_active=account.is_active,
            must_change_password=account.must_change_password,
            created_at=account.created_at,
            updated_at=account.updated_at,
            last_login_at=account.last_login_at,
            password_changed_at=account.password_changed_at,
            password_expires_at=self._password_expires_at(account),
            api_key_id=account.api_key_id,
            api_key_last_rotated_at=account.api_key_last_rotated_at,
            access_changed_at=account.access_changed_at,
            access_seq=account.access_seq,
            deleted_at=account.deleted_at,
            api_key_first_used_at=account.api_key_first_used_at,
        )
