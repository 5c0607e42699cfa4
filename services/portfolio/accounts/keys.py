"""API keys: rotation (with write-back to the managed store), verification, first use."""

import hmac

from sqlalchemy.exc import IntegrityError

from services.portfolio.accounts import apikeys, store
from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts.audit import SYSTEM, AuditContext, EventType
from services.portfolio.accounts.core import IdentityCore, canonical, logger
from services.portfolio.accounts.models import UserAccount
from services.portfolio.accounts.schemas import (
    ApiKeyRotation,
    User,
)
from services.portfolio.errors import (
    AccountDeletedError,
    ApiKeyInUseError,
    InvalidCredentialsError,
    UserNotFoundError,
)
from shared.apikeys import digest, key_id
from shared.secrets import SecretsManager

NEW_API_KEY_SECRET = "PORTFOLIO_NEW_API_KEY"  # noqa: S105  # nosec B105 - a secret's name


class ApiKeyCredentials(IdentityCore):
    """Issue and check API keys."""

    async def rotate_api_key(
        self,
        username: str,
        new_api_key: str | None = None,
        *,
        audit: AuditContext = SYSTEM,
        generate: bool = False,
    ) -> ApiKeyRotation:
        """Give a user a new API key (argument, else the secrets layer, else a random one;
        with `generate`, always a random one: what the HTTP API does)."""
        name = canonical(username)
        async with self._secrets_manager() as manager:
            if generate:
                api_key, generated = apikeys.generate(), True
            else:
                api_key, generated = await self._next_api_key(new_api_key, manager)
            apikeys.check(api_key)
            key_hash = digest(api_key)
            now = self._clock()
            async with self.database.sessions() as session:
                holder = await store.get_user_by_api_key_hash(session, key_hash)
                target = await store.get_user(session, name)
            if target is None:
                raise UserNotFoundError(name)
            if target.deleted_at is not None:
                raise AccountDeletedError(name)
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
                        api_key_first_used_at=None,
                        updated_at=now,
                        access_changed_at=now,
                        expect={"deleted_at": None},
                    )
                    if updated is not None:
                        updated = await store.record_access_change(session, updated, changed_at=now)
                        await audit_log.record(
                            session,
                            audit,
                            EventType.API_KEY_ROTATED,
                            subject=name,
                            at=now,
                            detail={"key_id": updated.api_key_id, "generated": generated},
                        )
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

    async def verify_api_key(self, api_key: str, *, audit: AuditContext = SYSTEM) -> User:
        """Return the active user holding this API key; audit its first use."""
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
        if account.api_key_first_used_at is None:
            account = await self._first_use(account, key_hash, audit)
        return self._user(account)

    async def _first_use(
        self, account: UserAccount, key_hash: str, audit: AuditContext
    ) -> UserAccount:
        now = self._clock()
        async with self.database.sessions.begin() as session:
            # Only the first of concurrent first uses stamps (and audits) it.
            updated = await store.update_user(
                session,
                account.username,
                expect={"api_key_hash": key_hash, "api_key_first_used_at": None},
                api_key_first_used_at=now,
            )
            if updated is not None:
                await audit_log.record(
                    session,
                    audit,
                    EventType.API_KEY_FIRST_USED,
                    subject=account.username,
                    at=now,
                    detail={"key_id": account.api_key_id},
                )
        return updated or account

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
