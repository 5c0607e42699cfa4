"""Who is calling: bearer tokens, API keys, logins (throttled) and logouts."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from services.api_gateway import metrics
from services.api_gateway.accounts import IdentityUser
from services.api_gateway.config import Settings
from services.api_gateway.errors import (
    GatewayError,
    InvalidCredentials,
    InvalidToken,
    NotAuthenticated,
    PasswordExpired,
    TooManyAttempts,
    UpstreamUnavailable,
)
from services.api_gateway.identity import IdentityClient
from services.api_gateway.metrics import Credential
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.stamps import AccessStamps
from services.api_gateway.state import GatewayState
from services.api_gateway.tokens import IssuedToken, TokenService
from shared import apikeys
from shared.usernames import username_label

logger = logging.getLogger("services.api_gateway.auth")

# A throttled account's refusals are audited at most this often (and this many accounts
# remembered), so a storm of refusals never becomes a storm of writes.
THROTTLE_AUDIT_SECONDS = 60.0
THROTTLE_AUDIT_TRACKED = 10_000

ROTATE_PATH = "/auth/password/rotate"
# `reason` of a `password_expired` answer for a password the user has never chosen.
MUST_CHANGE = "must_change_password"
_MAX_CREDENTIAL_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Login:
    """A successful login: the issued token and the roles it carries."""

    issued: IssuedToken
    roles: list[str]
    username: str


class Authenticator:
    """Turn presented credentials into a `Principal`, or raise an authentication error."""

    def __init__(
        self,
        *,
        settings: Settings,
        tokens: TokenService,
        identity: IdentityClient,
        state: GatewayState,
        stamps: AccessStamps | None = None,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._identity = identity
        self._state = state
        self._stamps = stamps
        self._refusals_audited: OrderedDict[str, float] = OrderedDict()

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """Authenticate by `Authorization: Bearer` if present, else by `X-API-Key`."""
        if authorization:
            try:
                principal = await self.bearer(bearer_token(authorization))
            except GatewayError as exc:
                metrics.authentication_failed(Credential.JWT, exc.code)
                raise
            metrics.AUTH_SUCCESS[Credential.JWT].inc()
            return principal
        if api_key:
            try:
                principal = await self.api_key(api_key)
            except GatewayError as exc:
                metrics.authentication_failed(Credential.API_KEY, exc.code)
                raise
            metrics.AUTH_SUCCESS[Credential.API_KEY].inc()
            return principal
        raise NotAuthenticated("authentication required: send 'Authorization: Bearer' or X-API-Key")

    async def bearer(self, token: str) -> Principal:
        """Verify a bearer token, honouring its expiry and revocation on every call."""
        principal = self._tokens.verify(token)
        if principal.jti is None or await self._state.is_token_revoked(principal.jti):
            self._tokens.forget(token)
            raise InvalidToken("the access token has been revoked")
        # Changes made in the identity store itself (identity sync): a dict lookup.
        if self._stamps is not None and self._stamps.refuses(principal):
            self._tokens.forget(token)
            raise InvalidToken("the access token predates a change to the account; log in again")
        return principal

    async def api_key(self, api_key: str) -> Principal:
        """Verify an API key through the identity service, cached briefly by its hash."""
        if len(api_key) > _MAX_CREDENTIAL_LENGTH:
            raise InvalidCredentials("invalid credentials")
        key_hash = apikeys.digest(api_key)
        cached = await self._state.cached_api_key(key_hash)
        if cached is not None:
            metrics.API_KEY_CACHE_HIT.inc()
            return cached
        metrics.API_KEY_CACHE_MISS.inc()
        # Read before the identity service is asked: an invalidation that lands while the
        # answer is on its way keeps this (possibly stale) answer out of the cache.
        epoch = await self._state.api_key_cache_epoch()
        verified = await self._identity.verify_api_key(api_key)
        principal = Principal(
            username=verified.user.username,
            roles=verified.user.roles,
            auth_method=AuthMethod.API_KEY,
            key_id=verified.key_id,
        )
        await self._state.cache_api_key(
            key_hash, principal, self._settings.gateway_api_key_cache_seconds, epoch=epoch
        )
        return principal

    @asynccontextmanager
    async def _throttled(
        self, username: str | None, client: str | None, *, attempts: str
    ) -> AsyncIterator[None]:
        """Guard a password check: take an attempt against the account and the client
        address before the password is checked, refusing while either has used up its
        limit; a wrong password keeps the attempt, a success gives it back and clears the
        account, any other outcome gives both back. `attempts` names them in the refusal.

        Taking the attempt first matters: a limit checked before and counted after the
        password check lets every attempt that arrives while the first ones run through.
        """
        # Without a username (a second step: the identity service counts the account's
        # attempts itself) only the address is counted here.
        account = f"account:{username_label(username)}" if username is not None else None
        address = f"address:{client or 'unknown'}"
        limits = {address: self._settings.gateway_login_max_attempts_per_address}
        if account is not None:
            limits[account] = self._settings.gateway_login_max_attempts
        retry_after = await self._state.reserve_login_attempt(
            limits, self._settings.gateway_login_window_seconds
        )
        metrics.throttle_decision(
            "login" if attempts in ("logins", "codes") else "password_rotation",
            refused=retry_after is not None,
        )
        if retry_after is not None:
            if username is not None:
                await self._audit_refusal(username_label(username))
            raise TooManyAttempts(
                f"too many failed {attempts}; try again later", retry_after=retry_after
            )
        try:
            yield
        except InvalidCredentials:
            if account is None:
                raise InvalidCredentials(
                    "invalid code, or the challenge is used or expired"
                ) from None
            # One message whatever was wrong, so it cannot tell which usernames exist.
            raise InvalidCredentials("invalid username or password") from None
        except Exception:
            # Not a wrong password (identity service down, expired password, a second
            # factor due, ...).
            await self._state.refund_login_attempt(tuple(limits))
            raise
        await self._state.refund_login_attempt((address,))
        if account is not None:
            await self._state.clear_login_failures(account)

    async def _audit_refusal(self, name: str) -> None:
        """Audit a throttled attempt (`login.throttled`), at most once a minute per account:
        a storm of refusals must not become a storm of writes."""
        now = time.monotonic()
        last = self._refusals_audited.get(name)
        if last is not None and now - last < THROTTLE_AUDIT_SECONDS:
            return
        self._refusals_audited[name] = now
        self._refusals_audited.move_to_end(name)
        while len(self._refusals_audited) > THROTTLE_AUDIT_TRACKED:
            self._refusals_audited.popitem(last=False)
        try:
            await self._identity.record_throttled(name)
        except GatewayError as exc:
            logger.warning("could not audit a throttled login (%s)", type(exc).__name__)

    async def login(self, username: str, password: str, *, client: str | None) -> Login:
        """Check a password through the identity service and issue a token."""
        try:
            login = await self._login(username, password, client=client)
        except GatewayError as exc:
            metrics.authentication_failed(Credential.PASSWORD, exc.code)
            raise
        metrics.AUTH_SUCCESS[Credential.PASSWORD].inc()
        return login

    async def _login(self, username: str, password: str, *, client: str | None) -> Login:
        async with self._throttled(username, client, attempts="logins"):
            try:
                user = await self._identity.authenticate(username, password)
            except PasswordExpired as exc:
                if exc.extra.get("reason") == MUST_CHANGE:
                    raise PasswordExpired(
                        "set your password: a new account (or a reset one) must choose its "
                        f"own password before its first sign-in, with POST {ROTATE_PATH}",
                        rotate_url=ROTATE_PATH,
                        reason=MUST_CHANGE,
                    ) from None
                raise PasswordExpired(
                    f"the password has expired; set a new one with POST {ROTATE_PATH}",
                    rotate_url=ROTATE_PATH,
                    reason="expired",
                ) from None
        return await self._issue(user)

    async def second_step(
        self,
        challenge: str,
        *,
        code: str | None,
        recovery_code: str | None,
        passkey: dict[str, Any] | None = None,
        client: str | None,
    ) -> Login:
        """Answer a login challenge (TOTP or recovery code) and issue a token. Throttled per
        address here; per account (the challenge's owner) by the identity service."""
        try:
            async with self._throttled(None, client, attempts="codes"):
                user = await self._identity.verify_second_step(
                    challenge, code=code, recovery_code=recovery_code, passkey=passkey
                )
        except GatewayError as exc:
            metrics.authentication_failed(Credential.PASSWORD, exc.code)
            raise
        metrics.AUTH_SUCCESS[Credential.PASSWORD].inc()
        return await self._issue(user, second_factor=True)

    async def finish_enrolment(
        self, challenge: str, factor_id: int, code: str, *, client: str | None
    ) -> tuple[Login, list[str]]:
        """Confirm the enrolment an enrolment-only challenge allowed; then sign in."""
        async with self._throttled(None, client, attempts="codes"):
            user, codes = await self._identity.confirm_totp(
                username=None, challenge=challenge, factor_id=factor_id, code=code
            )
        return await self._issue(user, second_factor=True), codes

    async def finish_passkey_enrolment(
        self,
        challenge: str,
        handle: str,
        credential: dict[str, Any],
        label: str,
        *,
        client: str | None,
    ) -> tuple[Login, int, list[str]]:
        """Register the passkey an enrolment-only challenge allowed; then sign in."""
        async with self._throttled(None, client, attempts="codes"):
            user, factor_id, codes = await self._identity.register_passkey(
                username=None,
                challenge=challenge,
                handle=handle,
                credential=credential,
                label=label,
            )
        return await self._issue(user, second_factor=True), factor_id, codes

    async def _issue(self, user: IdentityUser, *, second_factor: bool = False) -> Login:
        if not second_factor and self._settings.mfa_roles() & set(user.roles):
            # The identity service should have asked for a second factor: never trust a
            # password alone for such a role, whatever it answered.
            logger.error("the identity service let %s sign in with a password alone", user.username)
            raise UpstreamUnavailable(
                "the identity service did not ask for the second factor this account's "
                "role requires"
            )
        roles = list(user.roles)
        issued = self._tokens.issue(
            username=user.username,
            roles=roles,
            password_version=user.password_version,
            access_version=user.access_seq,
        )
        await self._state.track_token(
            subject=user.username, jti=issued.jti, expires_at=issued.expires_at
        )
        return Login(issued=issued, roles=roles, username=user.username)

    async def logout(self, principal: Principal, token: str) -> None:
        """Revoke a bearer token until it expires."""
        if principal.jti is None or principal.expires_at is None:
            raise NotAuthenticated("logout needs the bearer token to revoke")
        await self._state.revoke_token(principal.jti, principal.expires_at)
        self._tokens.forget(token)
        metrics.TOKEN_REVOKED.inc()
        try:
            # Kept by the identity store too: audited, and read back by a gateway on
            # in-process state when it restarts.
            await self._identity.revoke_token(
                jti=principal.jti, username=principal.username, expires_at=principal.expires_at
            )
        except GatewayError as exc:
            logger.warning(
                "logout: the revocation holds here but was not stored in the identity "
                "store (%s); it ends with this process unless the state is shared",
                type(exc).__name__,
            )

    async def rotate_password(
        self, username: str, current_password: str, new_password: str, *, client: str | None
    ) -> IdentityUser:
        """Rotate a password (throttled like a login); revoke the user's live tokens."""
        async with self._throttled(username, client, attempts="attempts"):
            user = await self._identity.rotate_password(username, current_password, new_password)
        await self.end_access(user)
        return user

    async def end_access(self, user: IdentityUser) -> None:
        """After a change made through this gateway (rotation, deactivation, roles), answered
        with the changed `user`: end the access obtained before it, at once."""
        # A login that checked the old credentials just before the change committed has its
        # token tracked only after the revocation below: the stamp refuses that one too.
        if self._stamps is not None:
            self._stamps.record_user(user)
        await self.forget_user(user.username)

    async def key_rotated(self, user: IdentityUser) -> None:
        """After an API-key rotation made through this gateway: the old key leaves this
        replica's cache now (the others' at their next poll of the change feed); the
        user's tokens stay."""
        if self._stamps is not None:
            self._stamps.record_user(user)
        await self._state.invalidate_api_keys(user.username)

    async def forget_user(self, username: str) -> None:
        """Make a user's existing tokens and cached API key stop working at once."""
        await self._state.revoke_subject(username)
        await self._state.invalidate_api_keys(username)
        metrics.USER_REVOKED.inc()


def bearer_token(authorization: str) -> str:
    """Return the token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    if len(token) > _MAX_CREDENTIAL_LENGTH:
        raise InvalidToken("the access token is malformed")
    return token
