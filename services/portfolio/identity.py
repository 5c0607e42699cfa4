"""`PortfolioIdentityService`: the identity store for scripts and operators, without `await`.

    identity = PortfolioIdentityService()          # the same database as a local run
    user = identity.create_user("ops", "a long passphrase", roles=["portfolio"])

Every call runs the async store on a private event loop in a background thread, so the
facade also works when it is called from code that already runs an event loop.
"""

import weakref
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, Self, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydantic import SecretStr

from services.portfolio.accounts.audit import AuditQuery, parse_event_type, read_forward
from services.portfolio.accounts.schemas import (
    ApiKeyRotation,
    AuditEventOut,
    IssuedPassword,
    User,
)
from services.portfolio.accounts.service import IdentityService
from services.portfolio.config import PortfolioSettings, load_settings
from services.portfolio.db import Database
from shared.clock import Clock, utcnow
from shared.secrets import SecretsManager
from shared.usernames import normalize_username

T = TypeVar("T")

__all__ = ["ApiKeyRotation", "PortfolioIdentityService", "User"]


class PortfolioIdentityService:
    """Synchronous facade over the identity store; migrates a new database on first use."""

    def __init__(
        self,
        database_url: str | None = None,
        settings: PortfolioSettings | None = None,
        *,
        secrets_manager: SecretsManager | None = None,
        clock: Clock = utcnow,
    ) -> None:
        settings = settings if settings is not None else load_settings()
        if database_url is not None:
            settings = settings.model_copy(update={"database_url": SecretStr(database_url)})
        self.settings = settings
        portal_cm = start_blocking_portal(name="portfolio-identity")
        portal = portal_cm.__enter__()
        try:
            database = portal.call(_open_database, settings)
        except BaseException:
            portal_cm.__exit__(None, None, None)
            raise
        self._portal = portal
        self._database = database
        self._service = IdentityService(
            database, settings, secrets_manager=secrets_manager, clock=clock
        )
        # Closes the pool and the loop when the facade is dropped or, at the latest, at exit.
        self._finalizer = weakref.finalize(self, _shut_down, portal_cm, portal, database)

    def create_user(
        self,
        username: str,
        password: str,
        roles: Iterable[str] = (),
        *,
        must_change_password: bool = False,
    ) -> User:
        """Create a user; `must_change_password=True` makes the password expired until rotated."""
        return self._run(
            self._service.create_user,
            username,
            password,
            list(roles),
            must_change_password=must_change_password,
        )

    def rotate_api_key(self, username: str, new_api_key: str | None = None) -> ApiKeyRotation:
        """Give a user a new API key; the result holds it in clear text this once."""
        return self._run(self._service.rotate_api_key, username, new_api_key)

    def rotate_password(self, username: str, current_password: str, new_password: str) -> User:
        """Replace a password after checking the current one (also when it has expired)."""
        return self._run(self._service.rotate_password, username, current_password, new_password)

    def authenticate(self, username: str, password: str) -> User:
        """Check a password and record the login."""
        return self._run(self._service.authenticate, username, password)

    def verify_api_key(self, api_key: str) -> User:
        """Return the active user holding this API key."""
        return self._run(self._service.verify_api_key, api_key)

    def get_user(self, username: str) -> User:
        """Return one user."""
        return self._run(self._service.get_user, username)

    def list_users(self) -> list[User]:
        """Return every user, by username: an auditable snapshot."""
        return self._run(self._service.list_users)

    def deactivate_user(self, username: str) -> User:
        """Deactivate a user: no login and no API key from now on."""
        return self._run(self._service.deactivate_user, username)

    def set_roles(self, username: str, roles: Iterable[str]) -> User:
        """Replace a user's roles."""
        return self._run(self._service.set_roles, username, list(roles))

    def reactivate_user(self, username: str) -> User:
        """Let a deactivated user sign in again."""
        return self._run(self._service.reactivate_user, username)

    def delete_user(self, username: str) -> User:
        """Delete a user softly: never signs in again; the name stays reserved."""
        return self._run(self._service.delete_user, username)

    def reset_password(self, username: str) -> IssuedPassword:
        """Set a one-time password (in the result, this once) to change at next sign-in."""
        return self._run(self._service.reset_password, username)

    def audit_events(
        self,
        *,
        since: datetime | None = None,
        user: str | None = None,
        event_type: str | None = None,
    ) -> list[AuditEventOut]:
        """Return the security events matching every filter given, oldest first."""
        query = AuditQuery(
            since=since,
            user=normalize_username(user) if user is not None else None,
            event_type=parse_event_type(event_type),
        )
        return self._run(self._collect, query)

    async def _collect(self, query: AuditQuery) -> list[AuditEventOut]:
        return [event async for event in read_forward(self._database, query)]

    def close(self) -> None:
        """Close the database connections and stop the background loop."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PortfolioIdentityService({self._database.description})"

    def _run(self, func: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        if not self._finalizer.alive:
            raise RuntimeError("this PortfolioIdentityService is closed")
        try:
            return self._portal.call(lambda: func(*args, **kwargs))
        except Exception as exc:
            unavailable = self._portal.call(self._database.diagnose, exc)
            if unavailable is not None:
                raise unavailable from None
            raise


async def _open_database(settings: PortfolioSettings) -> Database:
    return await Database.open(settings)


def _shut_down(
    portal_cm: AbstractContextManager[BlockingPortal], portal: BlockingPortal, database: Database
) -> None:
    try:
        portal.call(database.close)
    finally:
        portal_cm.__exit__(None, None, None)
