"""Client of the identity service's internal HTTP API (portfolio, `/internal/identity/*`)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import TypeAdapter, ValidationError

from services.api_gateway.accounts import (
    AccessChangePage,
    ApiKeyVerification,
    IdentityUser,
    StoredRevocation,
    StoredUsage,
)
from services.api_gateway.context import current_request
from services.api_gateway.errors import (
    AccountInactive,
    InvalidCredentials,
    UpstreamTimeout,
    UpstreamUnavailable,
    identity_error,
)
from services.api_gateway.state.base import ApiKeyUsage

SERVICE_TOKEN_HEADER = "X-Service-Token"  # noqa: S105  # nosec B105 - a header name

T = TypeVar("T")
_USER = TypeAdapter(IdentityUser)
_USERS = TypeAdapter(list[IdentityUser])
_VERIFICATION = TypeAdapter(ApiKeyVerification)


class IdentityClient:
    """Call the identity service; map its errors to ours and its answers to typed models.

    `client` is the pooled HTTP client the runtime opens (and closes) for the identity
    service: its base URL and service-token header are set there.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        refresh_token: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        # Re-reads the service token (and sets the header) when the identity service
        # refuses it; None: never.
        self.refresh_token = refresh_token

    async def authenticate(self, username: str, password: str) -> IdentityUser:
        """Check a password; return the user."""
        body = await self._call(
            "POST", "/internal/identity/authenticate", {"username": username, "password": password}
        )
        return _read(_USER, body.get("user"), "a user")

    async def verify_second_step(
        self,
        challenge: str,
        *,
        code: str | None,
        recovery_code: str | None,
        passkey: dict[str, Any] | None = None,
    ) -> IdentityUser:
        """Answer a login challenge with a TOTP or recovery code, or a passkey assertion;
        return the user."""
        body = await self._call(
            "POST",
            "/internal/identity/mfa/verify",
            {
                "challenge": challenge,
                "code": code,
                "recovery_code": recovery_code,
                "passkey": json.dumps(passkey) if passkey is not None else None,
            },
        )
        return _read(_USER, body.get("user"), "a user")

    async def passkey_registration_options(
        self, *, username: str | None, challenge: str | None
    ) -> dict[str, Any]:
        """Start a passkey registration; return `handle` and the WebAuthn `options`."""
        return await self._call(
            "POST",
            "/internal/identity/mfa/passkey/register/options",
            {"username": username, "challenge": challenge},
        )

    async def register_passkey(
        self,
        *,
        username: str | None,
        challenge: str | None,
        handle: str,
        credential: dict[str, Any],
        label: str,
    ) -> tuple[IdentityUser, int, list[str]]:
        """Verify a passkey registration; return the user, the factor id and the recovery
        codes (shown once)."""
        body = await self._call(
            "POST",
            "/internal/identity/mfa/passkey/register",
            {
                "username": username,
                "challenge": challenge,
                "handle": handle,
                "credential": json.dumps(credential),
                "label": label,
            },
        )
        codes = body.get("recovery_codes")
        factor_id = body.get("factor_id")
        if (
            not isinstance(codes, list)
            or not all(isinstance(code, str) for code in codes)
            or not isinstance(factor_id, int)
        ):
            raise UpstreamUnavailable("the identity service answered a registration without codes")
        return _read(_USER, body.get("user"), "a user"), factor_id, codes

    async def passkey_login_options(self, challenge: str) -> dict[str, Any]:
        """Return the WebAuthn options of a passkey sign-in answering a login challenge."""
        return await self._call(
            "POST", "/internal/identity/mfa/passkey/options", {"challenge": challenge}
        )

    async def list_factors(self, username: str) -> dict[str, Any]:
        """Return a user's factors (`factors`, `recovery_codes_left`, `required`)."""
        return await self._call("GET", f"/internal/identity/users/{_segment(username)}/mfa")

    async def start_totp(
        self, *, username: str | None, challenge: str | None, label: str | None = None
    ) -> dict[str, Any]:
        """Start a TOTP enrolment; return `factor_id`, `secret`, `otpauth_uri`."""
        payload: dict[str, Any] = {"username": username, "challenge": challenge}
        if label is not None:
            payload["label"] = label
        return await self._call("POST", "/internal/identity/mfa/totp", payload)

    async def confirm_totp(
        self, *, username: str | None, challenge: str | None, factor_id: int, code: str
    ) -> tuple[IdentityUser, list[str]]:
        """Confirm a TOTP enrolment; return the user and the recovery codes (shown once)."""
        body = await self._call(
            "POST",
            "/internal/identity/mfa/totp/confirm",
            {"username": username, "challenge": challenge, "factor_id": factor_id, "code": code},
        )
        codes = body.get("recovery_codes")
        if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
            raise UpstreamUnavailable("the identity service answered an enrolment without codes")
        return _read(_USER, body.get("user"), "a user"), codes

    async def remove_factor(self, username: str, factor_id: int) -> dict[str, Any]:
        """Remove one of a user's factors; return the factors left."""
        return await self._call(
            "DELETE", f"/internal/identity/users/{_segment(username)}/mfa/{factor_id}"
        )

    async def reset_mfa(self, username: str) -> IdentityUser:
        """Remove every factor of a user; return the user."""
        body = await self._call("POST", f"/internal/identity/users/{_segment(username)}/mfa/reset")
        return _read(_USER, body.get("user"), "a user")

    async def verify_api_key(self, api_key: str) -> ApiKeyVerification:
        """Check an API key; return its user and key id."""
        try:
            body = await self._call(
                "POST", "/internal/identity/api-keys/verify", {"api_key": api_key}
            )
        except AccountInactive:
            # Answered like an unknown key, whatever the identity service says: "inactive"
            # would confirm to whoever holds a leaked key that it is a real one.
            raise InvalidCredentials("invalid credentials") from None
        return _read(_VERIFICATION, body, "an API-key verification")

    async def rotate_password(
        self, username: str, current_password: str, new_password: str
    ) -> IdentityUser:
        """Replace a password (also when it has expired); return the user."""
        body = await self._call(
            "POST",
            "/internal/identity/password/rotate",
            {
                "username": username,
                "current_password": current_password,
                "new_password": new_password,
            },
        )
        return _read(_USER, body.get("user"), "a user")

    async def list_users(self) -> list[IdentityUser]:
        """Return every user."""
        body = await self._call("GET", "/internal/identity/users")
        return _read(_USERS, body.get("users"), "a user list")

    async def deactivate_user(self, username: str) -> IdentityUser:
        """Deactivate a user; return the user."""
        body = await self._call("POST", f"/internal/identity/users/{_segment(username)}/deactivate")
        return _read(_USER, body.get("user"), "a user")

    async def set_roles(self, username: str, roles: list[str]) -> IdentityUser:
        """Replace a user's roles; return the user."""
        body = await self._call(
            "PUT", f"/internal/identity/users/{_segment(username)}/roles", {"roles": roles}
        )
        return _read(_USER, body.get("user"), "a user")

    async def access_changes(
        self, after: int | None, *, window_seconds: float | None = None
    ) -> AccessChangePage:
        """Return one page of the change feed after the cursor `after` (without it, where a
        reader starts: `window_seconds` back by the identity service's clock), or raise
        `FeedFormatError` if the answer is not a change page."""
        if after is not None:
            query = f"?after={after}"
        elif window_seconds is not None:
            query = f"?window={window_seconds:.3f}"
        else:
            query = ""
        return AccessChangePage.from_json(
            await self._call("GET", f"/internal/identity/changes{query}")
        )

    async def create_user(
        self, username: str, roles: list[str], password: str | None
    ) -> tuple[IdentityUser, str | None]:
        """Create a user who must change the password at first sign-in; return it and the
        one-time password (None when `password` was given)."""
        body = await self._call(
            "POST",
            "/internal/identity/users",
            {"username": username, "roles": roles, "password": password},
            expect=201,
        )
        return _read(_USER, body.get("user"), "a user"), _optional_text(body, "one_time_password")

    async def reactivate_user(self, username: str) -> IdentityUser:
        """Let a deactivated user sign in again; return the user."""
        body = await self._call("POST", f"/internal/identity/users/{_segment(username)}/reactivate")
        return _read(_USER, body.get("user"), "a user")

    async def delete_user(self, username: str) -> IdentityUser:
        """Delete a user softly; return the user as deleted."""
        body = await self._call("DELETE", f"/internal/identity/users/{_segment(username)}")
        return _read(_USER, body.get("user"), "a user")

    async def reset_password(self, username: str) -> tuple[IdentityUser, str]:
        """Set a one-time password; return the user and the password (shown once)."""
        body = await self._call(
            "POST", f"/internal/identity/users/{_segment(username)}/password/reset"
        )
        password = _optional_text(body, "one_time_password")
        if password is None:
            raise UpstreamUnavailable("the identity service answered a reset without a password")
        return _read(_USER, body.get("user"), "a user"), password

    async def rotate_api_key(self, username: str) -> tuple[IdentityUser, str, str | None]:
        """Give a user a new random API key; return the user, the clear key (shown once) and
        where the managed store keeps it (None: no managed store)."""
        body = await self._call("POST", f"/internal/identity/users/{_segment(username)}/api-key")
        api_key = _optional_text(body, "api_key")
        if api_key is None:
            raise UpstreamUnavailable("the identity service answered a rotation without a key")
        user = _read(_USER, body.get("user"), "a user")
        return user, api_key, _optional_text(body, "stored_at")

    async def get_user(self, username: str) -> IdentityUser:
        """Return one user."""
        body = await self._call("GET", f"/internal/identity/users/{_segment(username)}")
        return _read(_USER, body.get("user"), "a user")

    async def record_throttled(self, username: str) -> None:
        """Audit a login this gateway's throttle refused (`login.throttled`)."""
        await self._call("POST", "/internal/identity/audit/login-throttled", {"username": username})

    async def revoke_token(self, *, jti: str, username: str, expires_at: float) -> None:
        """Keep a logout's revocation in the identity store (and its audit trail)."""
        await self._call(
            "POST",
            "/internal/identity/tokens/revoked",
            {
                "jti": jti,
                "username": username,
                "expires_at": datetime.fromtimestamp(expires_at, UTC).isoformat(),
            },
        )

    async def revocations(self) -> dict[str, float]:
        """Return the stored revocations still in force: jti -> expiry (epoch seconds)."""
        body = await self._call("GET", "/internal/identity/tokens/revoked")
        entries = _read(_REVOCATIONS, body.get("revoked"), "a revocation list")
        return {entry.jti: entry.expires_at.timestamp() for entry in entries}

    async def save_usage(self, counts: list[ApiKeyUsage]) -> None:
        """Add API-key usage counts to the stored totals."""
        await self._call(
            "POST",
            "/internal/identity/api-keys/usage",
            {"keys": [_usage_json(count) for count in counts]},
        )

    async def stored_usage(self) -> list[ApiKeyUsage]:
        """Return the stored API-key usage totals."""
        body = await self._call("GET", "/internal/identity/api-keys/usage")
        entries = _read(_USAGE, body.get("keys"), "an API-key usage list")
        return [
            ApiKeyUsage(
                key_id=entry.key_id,
                username=entry.username,
                requests=entry.requests,
                services=dict(entry.services),
                status_classes=dict(entry.status_classes),
                first_used_at=entry.first_used_at.timestamp(),
                last_used_at=entry.last_used_at.timestamp(),
                last_client=entry.last_client,
            )
            for entry in entries
        ]

    async def audit_events(self, query: dict[str, str]) -> dict[str, Any]:
        """Return one page of the audit trail (`since`, `user`, `type`, `cursor`, `limit`)."""
        return await self._call("GET", f"/internal/identity/audit?{urlencode(query)}")

    async def ready(self) -> bool:
        """Tell whether the identity service answers its readiness probe."""
        try:
            response = await self._client.get("/readyz", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def _call(
        self, method: str, path: str, payload: object = None, *, expect: int = 200
    ) -> dict[str, Any]:
        token = self._client.headers.get(SERVICE_TOKEN_HEADER)
        response = await self._send(method, path, payload)
        if self.refresh_token is not None and _token_refused(response):
            # The token may have been rotated and read by the identity service first. The
            # refused call did nothing (the token is checked before the body is read), so
            # it is sent again once with the token read now.
            await self.refresh_token()
            if self._client.headers.get(SERVICE_TOKEN_HEADER) != token:
                response = await self._send(method, path, payload)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == expect and isinstance(body, dict):
            return body
        raise identity_error(response, body)

    async def _send(self, method: str, path: str, payload: object) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=payload, headers=_audit_headers())
        except httpx.TimeoutException:
            raise UpstreamTimeout("the identity service did not answer in time") from None
        except httpx.HTTPError:
            raise UpstreamUnavailable("the identity service is unreachable") from None


def _audit_headers() -> dict[str, str]:
    """Who asks and from where, for the identity service's audit trail: the request this
    call serves (none for the gateway's own background calls)."""
    context = current_request.get()
    if context is None:
        return {}
    headers = {"X-Request-ID": context.request_id}
    if context.client is not None:
        headers["X-Audit-Client"] = context.client
    if context.principal is not None:
        headers["X-Audit-Actor"] = context.principal.username
    return headers


def _token_refused(response: httpx.Response) -> bool:
    if response.status_code != 401:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and error.get("code") in ("invalid_token", "not_authenticated")


_REVOCATIONS = TypeAdapter(list[StoredRevocation])
_USAGE = TypeAdapter(list[StoredUsage])


def _usage_json(count: ApiKeyUsage) -> dict[str, Any]:
    return {
        "key_id": count.key_id,
        "username": count.username,
        "requests": count.requests,
        "services": count.services,
        "status_classes": count.status_classes,
        "first_used_at": datetime.fromtimestamp(count.first_used_at, UTC).isoformat(),
        "last_used_at": datetime.fromtimestamp(count.last_used_at, UTC).isoformat(),
        "last_client": count.last_client,
    }


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    return value if isinstance(value, str) else None


def _segment(value: str) -> str:
    return quote(value, safe="")


def _read(model: TypeAdapter[T], value: object, what: str) -> T:
    try:
        return model.validate_python(value)
    except ValidationError:
        # A contract the two services no longer share: the gateway's fault to report, not
        # the caller's (and never the answer itself, which may hold account details).
        raise UpstreamUnavailable(
            f"the identity service answered {what} the gateway cannot read"
        ) from None
