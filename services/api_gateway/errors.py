"""Gateway errors: one root, one code each, their HTTP status in one table."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared import errors as shared_errors
from shared.errors import ErrorCode, error_body
from shared.limits import nested_too_deeply


class GatewayError(Exception):
    """Something the gateway answers with a JSON error instead of a result."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Return the response headers this error needs besides the body."""
        return {}


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
HTTP_STATUS: dict[type[GatewayError], int] = {
    NotAuthenticated: 401,
    InvalidCredentials: 401,
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
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_json(exc: GatewayError) -> bytes:
    """Return the JSON body of an error."""
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


def describe_validation_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Name each bad field and what is wrong with it (never the value sent)."""
    parts = []
    for error in errors:
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "the request is invalid"


def _json_error(exc: GatewayError, request: Request) -> JSONResponse:
    return JSONResponse(
        error_body(exc.code, exc.message, **exc.extra),
        status_code=status_for(exc),
        headers=exc.headers(),
    )


async def handle_gateway_error(request: Request, exc: Exception) -> Response:
    """Answer a gateway error with its status and JSON body."""
    if not isinstance(exc, GatewayError):
        raise exc
    return _json_error(exc, request)


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """Answer a request FastAPI could not validate, naming the fields."""
    if not isinstance(exc, RequestValidationError):
        raise exc
    return _json_error(InvalidRequest(describe_validation_errors(exc.errors())), request)


HTTP_CODES: dict[int, str] = {
    404: ErrorCode.NOT_FOUND,
    405: "method_not_allowed",
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Answer Starlette's own errors (unknown path, wrong method, oversized body) as JSON."""
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    if nested_too_deeply(exc):
        return _json_error(InvalidRequest("the JSON body nests too deeply"), request)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = "no such path" if exc.status_code == 404 else str(exc.detail)
    return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Answer a bug with a bare 500: no trace, no detail (uvicorn logs the exception)."""
    return JSONResponse(error_body(ErrorCode.INTERNAL_ERROR, "internal error"), status_code=500)


EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    GatewayError: handle_gateway_error,
    RequestValidationError: handle_validation_error,
    StarletteHTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
