"""Gateway errors: one root, one code each, their HTTP status in one table, the handlers."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

from shared import errors as shared_errors
from shared.errors import (
    ErrorCode,
    Handler,
    ServiceError,
    StatusTable,
    error_body,
    exception_handlers,
)


class GatewayError(ServiceError):
    """Something the gateway answers with a JSON error instead of a result."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, **extra)


class StartupError(shared_errors.StartupError):
    """The gateway cannot start: a setting or secret is missing or wrong."""


class AuthenticationError(GatewayError):
    """The caller could not be identified."""


class NotAuthenticated(AuthenticationError):
    """No credentials were presented."""

    code = ErrorCode.NOT_AUTHENTICATED

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class InvalidCredentials(AuthenticationError):
    """Wrong username, password or API key (never says which)."""

    code = ErrorCode.INVALID_CREDENTIALS


class MfaRequired(AuthenticationError):
    """The password checked out; a second factor is due (the body carries the challenge)."""

    code = ErrorCode.MFA_REQUIRED


class InvalidToken(AuthenticationError):
    """A bearer token that is malformed, forged, revoked or not for us."""

    code = ErrorCode.INVALID_TOKEN

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class TokenExpired(InvalidToken):
    """A bearer token past its `exp`."""

    code = ErrorCode.TOKEN_EXPIRED


class AccessDenied(GatewayError):
    """The caller is known but may not do this."""

    code = ErrorCode.FORBIDDEN


class Forbidden(AccessDenied):
    """The caller's roles do not grant the service or endpoint."""


class PasswordExpired(AccessDenied):
    """The password is too old; it must be rotated before logging in."""

    code = ErrorCode.PASSWORD_EXPIRED


class AccountInactive(AccessDenied):
    """The account was deactivated."""

    code = ErrorCode.ACCOUNT_INACTIVE


class NotFound(GatewayError):
    """No such path or resource."""

    code = ErrorCode.NOT_FOUND


class UnknownService(NotFound):
    """`/api/{service}` names no downstream service."""

    code = ErrorCode.UNKNOWN_SERVICE


class InvalidRequest(GatewayError):
    """The request body or parameters are wrong; the message names what."""

    code = ErrorCode.VALIDATION_ERROR


class CredentialsInQuery(GatewayError):
    """A credential sent as a query parameter, where every log and proxy would see it."""

    code = ErrorCode.CREDENTIALS_IN_QUERY


class MethodNotAllowed(GatewayError):
    """A method the proxy does not forward (TRACE, CONNECT, anything unknown)."""

    code = ErrorCode.METHOD_NOT_ALLOWED

    def __init__(self, message: str, *, allow: str) -> None:
        super().__init__(message)
        self.allow = allow

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


class WeakPassword(InvalidRequest):
    """The identity service refused the new password."""

    code = ErrorCode.WEAK_PASSWORD


class Conflict(GatewayError):
    """The identity service refused a change that conflicts with stored state."""

    code = ErrorCode.CONFLICT


class TooManyAttempts(GatewayError):
    """Too many failed logins for this account or client address."""

    code = ErrorCode.TOO_MANY_ATTEMPTS

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, retry_after=self.retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamError(GatewayError):
    """A downstream or identity service did not answer usefully."""

    code = ErrorCode.UPSTREAM_UNAVAILABLE


class UpstreamUnavailable(UpstreamError):
    """The upstream refused the connection or broke it."""


class UpstreamNotReady(UpstreamError):
    """The upstream answered that it is not ready, or the gateway is shutting down."""


class IdentityBusy(UpstreamError):
    """The identity service has no password-hashing capacity left; retry after a moment."""

    code = ErrorCode.IDENTITY_BUSY

    def __init__(self, message: str, *, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(message, retry_after=self.retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer in time."""

    code = ErrorCode.UPSTREAM_TIMEOUT


# Most specific first; `status_for` walks the class's MRO, so subclasses may be left out.
HTTP_STATUS: StatusTable = {
    NotAuthenticated: 401,
    InvalidCredentials: 401,
    MfaRequired: 401,
    TokenExpired: 401,
    InvalidToken: 401,
    PasswordExpired: 403,
    AccountInactive: 403,
    Forbidden: 403,
    UnknownService: 404,
    NotFound: 404,
    CredentialsInQuery: 400,
    MethodNotAllowed: 405,
    Conflict: 409,
    WeakPassword: 422,
    InvalidRequest: 422,
    TooManyAttempts: 429,
    UpstreamTimeout: 504,
    IdentityBusy: 503,
    UpstreamNotReady: 503,
    UpstreamUnavailable: 502,
    GatewayError: 500,
}


def status_for(exc: GatewayError) -> int:
    """Return the HTTP status of an error from the table."""
    return shared_errors.status_for(exc, HTTP_STATUS)


def error_json(exc: GatewayError) -> bytes:
    """Return the JSON body of an error (for the proxy, which answers without FastAPI)."""
    return json.dumps(
        error_body(exc.code, exc.message, **exc.extra), separators=(",", ":")
    ).encode()


# Error codes the identity service answers with, mapped to our errors.
IDENTITY_ERRORS: dict[str, type[GatewayError]] = {
    ErrorCode.INVALID_CREDENTIALS: InvalidCredentials,
    ErrorCode.PASSWORD_EXPIRED: PasswordExpired,
    ErrorCode.ACCOUNT_INACTIVE: AccountInactive,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.CONFLICT: Conflict,
    ErrorCode.WEAK_PASSWORD: WeakPassword,
    ErrorCode.VALIDATION_ERROR: InvalidRequest,
    ErrorCode.FORBIDDEN: Forbidden,
}


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = exception_handlers(HTTP_STATUS)


# The identity store refuses an account for at most 15 minutes by default; a day bounds any
# setting, and a `Retry-After` the gateway passes on.
MAX_THROTTLE_SECONDS = 86_400.0


def _busy_retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", "1"))
    except ValueError:
        return 1.0
    # A busy identity service frees up in seconds: a finite, short wait whatever it said.
    return min(max(seconds, 1.0), 60.0) if math.isfinite(seconds) else 1.0


def identity_error(response: httpx.Response, body: object) -> GatewayError:
    """Return the gateway error an identity service's error answer stands for."""
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if code == "too_many_attempts":
        retry = error.get("retry_after") if isinstance(error, dict) else None
        if retry is None:
            retry = response.headers.get("Retry-After", "60")
        try:
            seconds = float(retry)
        except (TypeError, ValueError):
            seconds = 60.0
        # Whatever the identity service sent, a finite wait no longer than its longest refusal.
        seconds = min(max(seconds, 1.0), MAX_THROTTLE_SECONDS) if math.isfinite(seconds) else 60.0
        return TooManyAttempts("too many attempts; try again later", retry_after=seconds)
    if code == "identity_busy":
        seconds = _busy_retry_after(response)
        return IdentityBusy(
            "the identity service is busy checking other passwords; "
            f"try again in {max(1, math.ceil(seconds))} seconds",
            retry_after=seconds,
        )
    if response.status_code == 401 and code in ("invalid_token", "not_authenticated"):
        # Our service token was refused: a deployment fault, not the caller's.
        return UpstreamNotReady("the identity service refused the gateway's service token")
    if code == ErrorCode.MFA_REQUIRED and isinstance(error, dict):
        return _mfa_required(error)
    mapped = IDENTITY_ERRORS.get(str(code)) if code else None
    if mapped is not None:
        if mapped is InvalidCredentials:
            return InvalidCredentials("invalid credentials")
        if mapped is PasswordExpired and isinstance(error, dict):
            reason = error.get("reason")
            if isinstance(reason, str) and reason in ("must_change_password", "expired"):
                return PasswordExpired(str(message or code), reason=reason)
        return mapped(str(message or code))
    if response.status_code >= 500:
        return UpstreamUnavailable(
            f"the identity service failed with status {response.status_code}"
        )
    return UpstreamUnavailable(
        f"the identity service answered an unexpected status {response.status_code}"
    )


def _mfa_required(error: dict[str, Any]) -> GatewayError:
    challenge, methods = error.get("challenge"), error.get("methods")
    expires_in = error.get("expires_in")
    if (
        not isinstance(challenge, str)
        or not isinstance(methods, list)
        or not all(isinstance(method, str) for method in methods)
        or not isinstance(expires_in, int)
    ):
        return UpstreamUnavailable("the identity service answered mfa_required without a challenge")
    enrol = error.get("enrolment_required") is True
    message = (
        "a second factor is required and none is enrolled: enrol one with POST "
        "/auth/mfa/totp and POST /auth/mfa/totp/confirm, passing this challenge; "
        "nothing else is allowed until then"
        if enrol
        else 'a second factor is required: POST /auth/token {"challenge", "code"} '
        '(or "recovery_code")'
    )
    return MfaRequired(
        message,
        challenge=challenge,
        methods=methods,
        expires_in=expires_in,
        enrolment_required=enrol,
    )
