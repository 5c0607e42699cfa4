"""The frontend's only upstream: the API gateway, through one shared HTTP client."""

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from services.frontend.errors import (
    GatewayError,
    GatewayTimeoutError,
    GatewayUnavailableError,
    SessionExpiredError,
)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """A gateway JWT and when it stops working."""

    access_token: str
    expires_at: float
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the gateway says the token belongs to (`GET /auth/me`)."""

    username: str
    roles: tuple[str, ...]
    services: tuple[str, ...]
    auth_method: str
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class Reply:
    """What a downstream service answered through the gateway, error or not."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        """Tell whether the service answered 2xx."""
        return 200 <= self.status < 300

    @property
    def error_message(self) -> str:
        """Return the message of an error body, or a generic line."""
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        return f"the gateway answered HTTP {self.status}"


def epoch(value: object) -> float | None:
    """Read a timestamp the gateway sent as epoch seconds or ISO 8601."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _grant(body: dict[str, Any]) -> TokenGrant:
    expires_at = epoch(body.get("expires_at"))
    if expires_at is None:
        expires_at = time.time() + float(body.get("expires_in", 0))
    return TokenGrant(
        access_token=str(body["access_token"]),
        expires_at=expires_at,
        roles=tuple(body.get("roles", ())),
    )


def _error(response: httpx.Response) -> GatewayError:
    body = _body(response)
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return GatewayError(
            response.status_code,
            "upstream_error",
            f"the gateway answered HTTP {response.status_code}",
        )
    details = {k: v for k, v in error.items() if k not in {"code", "message"}}
    return GatewayError(
        response.status_code,
        str(error.get("code", "upstream_error")),
        str(error.get("message", "")),
        details,
    )


class Gateway:
    """Calls to the gateway; any 401 on a call made with a session token expires the session."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def ready(self) -> str | None:
        """Return None when the gateway's `/readyz` answers 200, else what it answered."""
        response = await self._client.get("/readyz", headers={"Accept": "application/json"})
        return (
            None if response.status_code == 200 else f"its /readyz answered {response.status_code}"
        )

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        client: str | None = None,
        params: dict[str, str] | None = None,
        extra_headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        headers = {"Accept": "application/json", **(extra_headers or {})}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if client is not None:
            # The gateway throttles failed logins per address: tell it the browser's, not
            # ours (it believes this only from an address in GATEWAY_TRUSTED_PROXIES).
            headers["X-Forwarded-For"] = client
        try:
            response = await self._client.request(
                method, path, headers=headers, json=json, params=params
            )
        except httpx.TimeoutException as exc:
            raise GatewayTimeoutError() from exc
        except httpx.TransportError as exc:
            raise GatewayUnavailableError() from exc
        if response.status_code == 401 and token is not None:
            raise SessionExpiredError()
        return response

    async def _call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        client: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        response = await self._send(
            method, path, token=token, json=json, client=client, params=params
        )
        if response.is_error:
            raise _error(response)
        return _body(response)

    async def login(self, username: str, password: str, *, client: str | None = None) -> TokenGrant:
        """Exchange a password for a gateway token; `client` is the browser's address."""
        body = await self._call(
            "POST",
            "/auth/token",
            json={"username": username, "password": password},
            client=client,
        )
        return _grant(body)

    async def logout(self, token: str) -> None:
        """Revoke the token at the gateway."""
        await self._call("POST", "/auth/logout", token=token)

    async def me(self, token: str) -> Identity:
        """Ask the gateway who the token belongs to and what it may reach."""
        body = await self._call("GET", "/auth/me", token=token)
        return Identity(
            username=str(body["username"]),
            roles=tuple(body.get("roles", ())),
            services=tuple(body.get("services", ())),
            auth_method=str(body.get("auth_method", "password")),
            expires_at=epoch(body.get("expires_at")),
        )

    async def rotate_password(
        self, username: str, current: str, new: str, *, client: str | None = None
    ) -> None:
        """Replace a password, expired or not; `client` is the browser's address."""
        await self._call(
            "POST",
            "/auth/password/rotate",
            json={"username": username, "current_password": current, "new_password": new},
            client=client,
        )

    async def service(
        self,
        token: str,
        service: str,
        path: str,
        method: str = "GET",
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Call a downstream service through the gateway and keep its answer, error or not."""
        response = await self._send(
            method,
            f"/api/{quote(service, safe='')}/{path.lstrip('/')}",
            token=token,
            json=json,
            params=params,
            extra_headers=headers,
        )
        return Reply(response.status_code, _body(response))

    async def users(self, token: str) -> list[dict[str, Any]]:
        """Return the audit snapshot of every user (admin)."""
        body = await self._call("GET", "/admin/users", token=token)
        users = body.get("users", []) if isinstance(body, dict) else body
        return [user for user in users if isinstance(user, dict)]

    async def deactivate_user(self, token: str, username: str) -> dict[str, Any]:
        """Deactivate a user (admin)."""
        body = await self._call(
            "POST", f"/admin/users/{quote(username, safe='')}/deactivate", token=token
        )
        return dict(body.get("user", body))

    async def set_roles(self, token: str, username: str, roles: list[str]) -> dict[str, Any]:
        """Replace a user's roles (admin)."""
        body = await self._call(
            "PUT",
            f"/admin/users/{quote(username, safe='')}/roles",
            token=token,
            json={"roles": roles},
        )
        return dict(body.get("user", body))

    async def api_key_usage(self, token: str) -> Any:
        """Return the usage totals of every current API key (admin)."""
        return await self._call("GET", "/admin/api-keys/usage", token=token)

    async def create_user(
        self, token: str, username: str, roles: list[str], password: str | None
    ) -> dict[str, Any]:
        """Create a user (admin); the answer holds a one-time password when none was given."""
        body: dict[str, Any] = {"username": username, "roles": roles}
        if password:
            body["password"] = password
        return dict(await self._call("POST", "/admin/users", token=token, json=body))

    async def user_action(self, token: str, username: str, action: str) -> dict[str, Any]:
        """Reactivate, delete, reset the password of, or rotate the API key of a user (admin)."""
        method, suffix = USER_ACTIONS[action]
        path = f"/admin/users/{quote(username, safe='')}{suffix}"
        return dict(await self._call(method, path, token=token))

    async def second_step(
        self,
        challenge: str,
        *,
        code: str | None = None,
        recovery_code: str | None = None,
        client: str | None = None,
    ) -> TokenGrant:
        """Answer the second-step challenge with a TOTP or recovery code; get the token."""
        body = await self._call(
            "POST",
            "/auth/token",
            json={"challenge": challenge, "code": code, "recovery_code": recovery_code},
            client=client,
        )
        return _grant(body)

    async def start_totp(
        self, *, token: str | None = None, challenge: str | None = None
    ) -> dict[str, Any]:
        """Start a TOTP enrolment (signed in, or with an enrolment challenge)."""
        payload = {"challenge": challenge} if challenge is not None else {}
        return dict(await self._call("POST", "/auth/mfa/totp", token=token, json=payload))

    async def confirm_totp(
        self,
        factor_id: int,
        code: str,
        *,
        token: str | None = None,
        challenge: str | None = None,
        client: str | None = None,
    ) -> tuple[list[str], TokenGrant | None]:
        """Confirm a TOTP enrolment; return the recovery codes and, after an enrolment
        challenge, the token of the sign-in it completes."""
        payload: dict[str, Any] = {"factor_id": factor_id, "code": code}
        if challenge is not None:
            payload["challenge"] = challenge
        body = await self._call(
            "POST", "/auth/mfa/totp/confirm", token=token, json=payload, client=client
        )
        codes = [str(code) for code in body.get("recovery_codes", [])]
        token_body = body.get("token")
        return codes, _grant(token_body) if isinstance(token_body, dict) else None

    async def passkey_registration_options(
        self, *, token: str | None = None, challenge: str | None = None
    ) -> dict[str, Any]:
        """Start a passkey registration: `handle` and the WebAuthn `options`."""
        payload = {"challenge": challenge} if challenge is not None else {}
        return dict(
            await self._call(
                "POST", "/auth/mfa/passkey/register/options", token=token, json=payload
            )
        )

    async def register_passkey(
        self,
        handle: str,
        credential: dict[str, Any],
        *,
        token: str | None = None,
        challenge: str | None = None,
        client: str | None = None,
    ) -> tuple[list[str], TokenGrant | None]:
        """Register a passkey; return the recovery codes and, after an enrolment challenge,
        the token of the sign-in it completes."""
        payload: dict[str, Any] = {"handle": handle, "credential": credential}
        if challenge is not None:
            payload["challenge"] = challenge
        body = await self._call(
            "POST", "/auth/mfa/passkey/register", token=token, json=payload, client=client
        )
        codes = [str(code) for code in body.get("recovery_codes", [])]
        token_body = body.get("token")
        return codes, _grant(token_body) if isinstance(token_body, dict) else None

    async def passkey_login_options(self, challenge: str) -> dict[str, Any]:
        """Return the WebAuthn options answering a login challenge with a passkey."""
        return dict(
            await self._call("POST", "/auth/mfa/passkey/options", json={"challenge": challenge})
        )

    async def passkey_sign_in(
        self, challenge: str, credential: dict[str, Any], *, client: str | None = None
    ) -> TokenGrant:
        """Answer a login challenge with a passkey assertion; get the token."""
        body = await self._call(
            "POST",
            "/auth/token",
            json={"challenge": challenge, "passkey": credential},
            client=client,
        )
        return _grant(body)

    async def mfa_factors(self, token: str) -> dict[str, Any]:
        """Return the caller's second factors."""
        return dict(await self._call("GET", "/auth/mfa", token=token))

    async def remove_factor(self, token: str, factor_id: int) -> dict[str, Any]:
        """Remove one of the caller's second factors."""
        return dict(await self._call("DELETE", f"/auth/mfa/{factor_id}", token=token))

    async def my_api_key(self, token: str) -> dict[str, Any]:
        """Return the caller's key id, creation and last use, never the key."""
        return dict(await self._call("GET", "/auth/api-key", token=token))

    async def rotate_my_api_key(self, token: str) -> dict[str, Any]:
        """Give the caller a new API key, returned this once."""
        return dict(await self._call("POST", "/auth/api-key", token=token))

    async def audit(self, token: str, params: dict[str, str]) -> dict[str, Any]:
        """Return one page of security events, newest first (admin)."""
        return dict(await self._call("GET", "/admin/audit", token=token, params=params))


# The admin's actions on one user: what each is called at the gateway.
USER_ACTIONS = {
    "reactivate": ("POST", "/reactivate"),
    "delete": ("DELETE", ""),
    "reset-password": ("POST", "/password/reset"),
    "rotate-api-key": ("POST", "/api-key"),
    "reset-mfa": ("POST", "/mfa/reset"),
}
