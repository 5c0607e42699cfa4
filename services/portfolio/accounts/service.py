"""The identity store's rules: users, passwords, roles, API keys and the login throttle."""

import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError

from services.portfolio import metrics
from services.portfolio.accounts import apikeys, store
from services.portfolio.accounts.models import UserAccount
from services.portfolio.accounts.passwords import PasswordHasher, check_password_policy
from services.portfolio.accounts.schemas import (
    AccessChange,
    AccessChangesOut,
    ApiKeyRotation,
    User,
)
from services.portfolio.accounts.throttle import Throttle, UnknownNameThrottle
from services.portfolio.config import PortfolioSettings
from services.portfolio.db import Database
from services.portfolio.errors import (
    AccountInactiveError,
    ApiKeyInUseError,
    IdentityBusyError,
    InvalidCredentialsError,
    InvalidInputError,
    PasswordExpiredError,
    PortfolioError,
    TooManyAttemptsError,
    UserExistsError,
    UserNotFoundError,
)
from shared.apikeys import digest, key_id
from shared.clock import Clock, utcnow
from shared.roles import UnknownRoleError, parse_roles
from shared.secrets import SecretsManager
from shared.usernames import InvalidUsernameError, normalize_username

logger = logging.getLogger("services.portfolio.identity")

NEW_API_KEY_SECRET = "PORTFOLIO_NEW_API_KEY"  # noqa: S105  # nosec B105 - a secret's name
# A reservation refused by the database but not by the row read right after it (a login
# succeeded in between) is tried again this often before the attempt is refused.
_RESERVE_TRIES = 3


def _canonical(username: str) -> str:
    """Return the canonical form of a username, or raise `InvalidInputError`."""
    try:
        return normalize_username(username)
    except InvalidUsernameError as exc:
        raise InvalidInputError(str(exc)) from None


def _roles(roles: Iterable[str]) -> list[str]:
    if isinstance(roles, str):
        raise InvalidInputError("roles must be a list of role names, not one string")
    try:
        return [str(role) for role in parse_roles(roles)]
    except UnknownRoleError as exc:
        raise InvalidInputError(str(exc)) from None


class IdentityService:
    """Users and their credentials, over one database."""

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

    async def create_user(
        self,
        username: str,
        password: str,
        roles: Iterable[str] = (),
        *,
        must_change_password: bool = False,
    ) -> User:
        """Create a user with an Argon2id-hashed password."""
        name = _canonical(username)
        role_names = _roles(roles)
        check_password_policy(password, self.settings)
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
        except IntegrityError:
            raise UserExistsError(name) from None
        logger.info("created user %s with roles %s", name, role_names)
        return self._user(account)

    async def authenticate(self, username: str, password: str) -> User:
        """Check a password; refuse inactive accounts and expired passwords after it checks out."""
        try:
            user = await self._authenticate(username, password)
        except PortfolioError as exc:
            metrics.login_outcome(exc.code)
            raise
        metrics.LOGIN_SUCCESS.inc()
        return user

    async def _authenticate(self, username: str, password: str) -> User:
        account = await self._check_password(username, password, on_success=self._login_stamp)
        if not account.is_active:
            raise AccountInactiveError()
        if self._password_expired(account):
            raise PasswordExpiredError()
        return self._user(account)

    def _login_stamp(self, account: UserAccount) -> dict[str, object]:
        # A login refused after its password checks out (inactive, expired) is no login.
        if not account.is_active or self._password_expired(account):
            return {}
        return {"last_login_at": self._clock()}

    async def rotate_password(
        self, username: str, current_password: str, new_password: str
    ) -> User:
        """Replace a password after checking the current one; works on an expired password."""
        check_password_policy(new_password, self.settings, current=current_password)
        account = await self._check_password(username, current_password)
        if not account.is_active:
            raise AccountInactiveError()
        password_hash = await self._hasher.hash(new_password)
        now = self._clock()
        async with self.database.sessions.begin() as session:
            updated = await store.update_user(
                session,
                account.username,
                password_hash=password_hash,
                password_changed_at=now,
                must_change_password=False,
                updated_at=now,
                access_changed_at=now,
            )
            if updated is not None:
                updated = await store.record_access_change(session, updated, changed_at=now)
        if updated is None:
            raise InvalidCredentialsError()
        logger.info("rotated the password of %s", account.username)
        return self._user(updated)

    async def rotate_api_key(self, username: str, new_api_key: str | None = None) -> ApiKeyRotation:
        """Give a user a new API key (argument, else the secrets layer, else a random one)."""
        name = _canonical(username)
        async with self._secrets_manager() as manager:
            api_key, generated = await self._next_api_key(new_api_key, manager)
            apikeys.check(api_key)
            key_hash = digest(api_key)
            now = self._clock()
            async with self.database.sessions() as session:
                holder = await store.get_user_by_api_key_hash(session, key_hash)
                if await store.get_user(session, name) is None:
                    raise UserNotFoundError(name)
            if holder is not None:
                whose = "this user's current key" if holder.username == name else "in use"
                raise ApiKeyInUseError(f"that API key is {whose}; supply a new one")
            try:
                async with self.database.sessions.begin() as session:
                    updated = await store.update_user(
                        session,
                        name,
                        api_key_hash=key_hash,
                        api_key_id=key_id(key_hash),
                        api_key_last_rotated_at=now,
                        updated_at=now,
                        access_changed_at=now,
                    )
                    if updated is not None:
                        updated = await store.record_access_change(session, updated, changed_at=now)
            except IntegrityError:
                raise ApiKeyInUseError("that API key is in use; supply a new one") from None
            if updated is None:
                raise UserNotFoundError(name)
            stored_at = await self._write_back(manager, name, api_key)
        user = self._user(updated)
        logger.info("rotated the API key of %s (key id %s)", name, user.api_key_id)
        if generated and stored_at is None:
            logger.warning(
                "the new API key of %s was generated and no managed secrets store is "
                "configured; it is returned once in the result and stored nowhere else",
                name,
            )
        return ApiKeyRotation(user=user, api_key=api_key, stored_at=stored_at, generated=generated)

    async def verify_api_key(self, api_key: str) -> User:
        """Return the active user holding this API key."""
        if not apikeys.has_valid_form(api_key):
            raise InvalidCredentialsError("invalid API key")
        key_hash = digest(api_key)
        async with self.database.sessions() as session:
            account = await store.get_user_by_api_key_hash(session, key_hash)
        # The index found the row; compare in constant time anyway so a lookup that
        # matched loosely (collation, padding) can never pass. A deactivated holder's key
        # reads exactly like an unknown key: saying "inactive" would confirm the key exists.
        matches = account is not None and hmac.compare_digest(account.api_key_hash or "", key_hash)
        if account is None or not matches or not account.is_active:
            raise InvalidCredentialsError("invalid API key")
        return self._user(account)

    async def get_user(self, username: str) -> User:
        """Return one user."""
        name = _canonical(username)
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

    async def deactivate_user(self, username: str) -> User:
        """Deactivate a user: no login, no API key, from now on."""
        return await self._update(username, is_active=False)

    async def set_roles(self, username: str, roles: Iterable[str]) -> User:
        """Replace a user's roles."""
        return await self._update(username, roles=_roles(roles))

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

    async def _update(self, username: str, **values: Any) -> User:
        name = _canonical(username)
        now = self._clock()
        async with self.database.sessions.begin() as session:
            # Every `_update` (deactivation, roles) ends live access: stamp it for the feed.
            updated = await store.update_user(
                session, name, updated_at=now, access_changed_at=now, **values
            )
            if updated is not None:
                updated = await store.record_access_change(session, updated, changed_at=now)
        if updated is None:
            raise UserNotFoundError(name)
        logger.info("updated %s of %s", ", ".join(sorted(values)), name)
        return self._user(updated)

    async def _check_password(
        self,
        username: str,
        password: str,
        *,
        on_success: Callable[[UserAccount], dict[str, object]] | None = None,
    ) -> UserAccount:
        """Return the account if the password matches; count and throttle failures.

        The attempt is counted before the password is checked, not after it fails:
        otherwise every attempt arriving while the first ones are still hashing would pass
        a count that none of them has raised yet. `on_success` adds columns to the write
        that clears the count, so a login costs one commit more than before, not two.
        """
        try:
            name = _canonical(username)
        except InvalidInputError:
            await self._hasher.verify_dummy(password)
            raise InvalidCredentialsError() from None
        now = self._clock()
        account = await self._reserve_attempt(name, now)
        if account is None:
            # Always run the hasher so timing does not reveal whether the user exists.
            await self._hasher.verify_dummy(password)
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
        )

    async def _next_api_key(
        self, explicit: str | None, manager: SecretsManager
    ) -> tuple[str, bool]:
        if explicit is not None:
            return explicit, False
        # Read afresh: an operator sets the next key right before rotating, and a cached
        # value would be the previous rotation's key.
        supplied = await manager.get(NEW_API_KEY_SECRET, fresh=True)
        if supplied is not None:
            return supplied.get_secret_value(), False
        return apikeys.generate(), True

    async def _write_back(self, manager: SecretsManager, username: str, api_key: str) -> str | None:
        try:
            return await manager.write_api_key(username, api_key)
        except Exception as exc:
            # The database already holds the new key; losing the only clear copy by
            # raising here would be worse than reporting where it could not be written.
            logger.warning(
                "could not write the new API key of %s back to the secrets store: %s",
                username,
                type(exc).__name__,
            )
            return None

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
