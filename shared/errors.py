"""The JSON error body every service answers with, the error codes of the spec, and the
one-line report of a refused start-up."""

import sys
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ErrorCode(StrEnum):
    """An error code of the public contract."""

    INVALID_CREDENTIALS = "invalid_credentials"
    TOKEN_EXPIRED = "token_expired"  # noqa: S105  # nosec B105 - an error code
    INVALID_TOKEN = "invalid_token"  # noqa: S105  # nosec B105 - an error code
    PASSWORD_EXPIRED = "password_expired"  # noqa: S105  # nosec B105 - an error code
    ACCOUNT_INACTIVE = "account_inactive"
    FORBIDDEN = "forbidden"
    NOT_AUTHENTICATED = "not_authenticated"
    NOT_FOUND = "not_found"
    UNKNOWN_SERVICE = "unknown_service"
    CONFLICT = "conflict"
    VALIDATION_ERROR = "validation_error"
    WEAK_PASSWORD = "weak_password"  # noqa: S105  # nosec B105 - an error code
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    URI_TOO_LONG = "uri_too_long"
    HEADERS_TOO_LARGE = "headers_too_large"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_TIMEOUT = "upstream_timeout"
    SERVICE_UNAVAILABLE = "service_unavailable"
    IDENTITY_BUSY = "identity_busy"
    INTERNAL_ERROR = "internal_error"
    CREDENTIALS_IN_QUERY = "credentials_in_query"
    METHOD_NOT_ALLOWED = "method_not_allowed"


# The status each code answers with unless a caller has a reason to choose another
# (upstream_unavailable is 502 for a refused connection, 503 when nothing is configured).
DEFAULT_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.TOKEN_EXPIRED: 401,
    ErrorCode.INVALID_TOKEN: 401,
    ErrorCode.NOT_AUTHENTICATED: 401,
    ErrorCode.PASSWORD_EXPIRED: 403,
    ErrorCode.ACCOUNT_INACTIVE: 403,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_SERVICE: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.WEAK_PASSWORD: 422,
    ErrorCode.TOO_MANY_ATTEMPTS: 429,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.URI_TOO_LONG: 414,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.UPSTREAM_UNAVAILABLE: 502,
    ErrorCode.UPSTREAM_TIMEOUT: 504,
    ErrorCode.SERVICE_UNAVAILABLE: 503,
    ErrorCode.IDENTITY_BUSY: 503,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.CREDENTIALS_IN_QUERY: 400,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
}


def error_body(code: ErrorCode | str, message: str, **extra: Any) -> dict[str, Any]:
    """Build `{"error": {"code", "message", ...}}`."""
    return {"error": {"code": str(code), "message": message, **extra}}


class StartupError(Exception):
    """A service cannot start; the message is one line naming what is wrong, never a secret."""


def settings_problems(exc: ValidationError, *, delimiter: str = ".") -> str:
    """Name every bad setting of `exc` in one line: `NAME: message; NAME: message`.

    A nested setting's path is joined with `delimiter` (the settings' `env_nested_delimiter`
    when it has one) and upper-cased, so the name reads like the environment variable.
    """
    return "; ".join(
        f"{delimiter.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
        for error in exc.errors()
    )


class StartupErrorMiddleware:
    """Report a `StartupError` raised in the lifespan as its one line instead of a traceback."""

    def __init__(self, app: ASGIApp, *, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_short(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # Starlette sends this from inside its `except` block, so the error is current.
                error = sys.exc_info()[1]
                if isinstance(error, StartupError):
                    message = {**message, "message": f"{self.prefix}{error}"}
            await send(message)

        await self.app(scope, receive, send_short)
