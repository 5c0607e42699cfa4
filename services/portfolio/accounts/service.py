"""The identity store's rules: users, passwords, roles, API keys and the login throttle."""

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import store
from services.portfolio.accounts.audit import SYSTEM, AuditContext, EventType
from services.portfolio.accounts.core import canonical, checked_roles, logger
from services.portfolio.accounts.keys import NEW_API_KEY_SECRET, ApiKeyCredentials
from services.portfolio.accounts.lifecycle import AccountLifecycle
from services.portfolio.accounts.models import UserAccount
from services.portfolio.accounts.passkeys import Passkeys
from services.portfolio.accounts.passwords import one_time_password
from services.portfolio.accounts.schemas import (
    AccessChange,
    AccessChangesOut,
    IssuedPassword,
    User,
)
from services.portfolio.errors import (
    InvalidInputError,
    UserExistsError,
    UserNotFoundError,
)

__all__ = ["NEW_API_KEY_SECRET", "IdentityService"]


class IdentityService(AccountLifecycle, Passkeys, ApiKeyCredentials):
    """Users and their credentials, over one database."""

    async def create_account(
        self,
        username: str,
        roles: Iterable[str],
        password: str | None = None,
        *,
        audit: AuditContext = SYSTEM,
    ) -> IssuedPassword:
        """Create a user who must set their own password at first sign-in: with the
        password given, or else a one-time password returned this once."""
        role_names = checked_roles(roles)
        if not role_names:
            raise InvalidInputError("roles: give at least one role")
        name = canonical(username)
        issued = one_time_password(avoid=name) if password is None else None
        user = await self.create_user(
            name, password or issued or "", role_names, must_change_password=True, audit=audit
        )
        return IssuedPassword(user=user, one_time_password=issued)

    async def create_user(
        self,
        username: str,
        password: str,
        roles: Iterable[str] = (),
        *,
        must_change_password: bool = False,
        audit: AuditContext = SYSTEM,
    ) -> User:
        """Create a user with an Argon2id-hashed password."""
        name = canonical(username)
        role_names = checked_roles(roles)
        await self._check_policy(password, username=name)
        password_hash = await self._hasher.hash(password)
        now = self._clock()
        account = UserAccount(
            username=name,
            password_hash=password_hash,
            roles=role_names,
            is_active=True,
            must_change_password=must_change_password,
            created_at=now,
            updated_at=now,
            last_login_at=None,
            password_changed_at=now,
            api_key_hash=None,
            api_key_id=None,
            api_key_last_rotated_at=None,
            failed_login_count=0,
            throttled_until=None,
        )
        try:
            async with self.database.sessions.begin() as session:
                await store.add_user(session, account)
                await audit_log.record(
                    session,
                    audit,
                    EventType.USER_CREATED,
                    subject=name,
                    at=now,
                    detail={"roles": role_names, "must_change_password": must_change_password},
                )
        except IntegrityError:
            raise UserExistsError(name) from None
        logger.info("created user %s with roles %s", name, role_names)
        return self._user(account)

    async def get_user(self, username: str) -> User:
        """Return one user."""
        name = canonical(username)
        async with self.database.sessions() as session:
            account = await store.get_user(session, name)
        if account is None:
            raise UserNotFoundError(name)
        return self._user(account)

    async def list_users(self) -> list[User]:
        """Return every user, by username."""
        async with self.database.sessions() as session:
            accounts = await store.list_users(session)
        return [self._user(account) for account in accounts]

    async def deactivate_user(self, username: str, *, audit: AuditContext = SYSTEM) -> User:
        """Deactivate a user: no login, no API key, from now on."""
        return await self._update(username, audit, EventType.USER_DEACTIVATED, is_active=False)

    async def set_roles(
        self, username: str, roles: Iterable[str], *, audit: AuditContext = SYSTEM
    ) -> User:
        """Replace a user's roles."""
        role_names = checked_roles(roles)
        return await self._update(
            username, audit, EventType.ROLES_CHANGED, {"roles": role_names}, roles=role_names
        )

    async def access_changes(
        self, after: int | None, *, limit: int, window_seconds: float | None = None
    ) -> AccessChangesOut:
        """Return one page of the change feed: entries with an id above `after`, in commit
        order, and the cursor to pass next.

        Without `after` the page is empty and `cursor` is where a new reader starts: the
        head, or with `window_seconds` the first change of that many seconds back by this
        service's clock (a reader's own clock is never compared with it).
        """
        async with self.database.sessions() as session:
            if after is None:
                if window_seconds is None:
                    cursor = await store.access_feed_head(session)
                else:
                    since = self._clock() - timedelta(seconds=window_seconds)
                    cursor = await store.access_feed_start(session, changed_since=since)
                return AccessChangesOut(changes=[], cursor=cursor)
            if after < 0:
                raise InvalidInputError("after must be a cursor this feed returned (0 or more)")
            records = await store.list_access_changes(session, after=after, limit=limit)
        changes = [
            AccessChange(
                seq=record.id,
                username=record.username,
                is_active=record.is_active,
                roles=list(record.roles),
                changed_at=record.changed_at,
                api_key_id=record.api_key_id,
                password_changed_at=record.password_changed_at,
            )
            for record in records
        ]
        # Ids are unique: a full page of changes made at one moment still moves on.
        cursor = changes[-1].seq if changes else after
        return AccessChangesOut(changes=changes, cursor=cursor, more=len(changes) == limit)
