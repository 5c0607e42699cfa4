"""An account's life after creation: reactivation, deletion and password resets."""

from services.portfolio.accounts.audit import SYSTEM, AuditContext, EventType
from services.portfolio.accounts.core import IdentityCore, canonical
from services.portfolio.accounts.passwords import one_time_password
from services.portfolio.accounts.schemas import IssuedPassword, User


class AccountLifecycle(IdentityCore):
    """Bring an account back, delete it for good, or reset its password."""

    async def reactivate_user(self, username: str, *, audit: AuditContext = SYSTEM) -> User:
        """Let a deactivated user sign in again (tokens from before stay ended)."""
        return await self._update(username, audit, EventType.USER_REACTIVATED, is_active=True)

    async def delete_user(self, username: str, *, audit: AuditContext = SYSTEM) -> User:
        """Delete an account softly: it never signs in again, its API key is dropped, the
        row stays so its name stays reserved and its history auditable."""
        return await self._update(
            username,
            audit,
            EventType.USER_DELETED,
            is_active=False,
            deleted_at=self._clock(),
            api_key_hash=None,
        )

    async def reset_password(
        self, username: str, *, audit: AuditContext = SYSTEM
    ) -> IssuedPassword:
        """Give a user a new one-time password, to change at the next sign-in; every token
        issued before it ends (the feed carries the new password time)."""
        name = canonical(username)
        password = one_time_password(avoid=name)
        password_hash = await self._hasher.hash(password)
        user = await self._update(
            name,
            audit,
            EventType.PASSWORD_RESET,
            password_hash=password_hash,
            password_changed_at=self._clock(),
            must_change_password=True,
            failed_login_count=0,
            throttled_until=None,
        )
        return IssuedPassword(user=user, one_time_password=password)
