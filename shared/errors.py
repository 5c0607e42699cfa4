"""The error contract every service answers with: the public codes, the JSON error body and
its OpenAPI model, the root of every service's errors, the handlers of the framework's own
errors, and the one-line report of a refused start-up."""

import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)


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
    # A second factor is due: the answer carries the challenge for the second step.
    MFA_REQUIRED = "mfa_required"
    # Any other HTTP error the framework raises; its status is the framework's.
    HTTP_ERROR = "http_error"


# The status each code answers with unless a caller has a reason to choose another
# (upstream_unavailable is 502 for a refused connection, 503 when nothing is configured).
DEFAULT_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_CREDENTIALS: 401,
    ErrorCode.MFA_REQUIRED: 401,
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


class ErrorDetail(BaseModel):
    """What went wrong: a stable code and a readable message (extra keys may follow)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """The JSON error body every endpoint answers with."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document the error statuses of an endpoint for its `responses=` in OpenAPI."""
    return {status: {"model": ErrorBody} for status in statuses}


def error_body(code: ErrorCode | str, message: str, **extra: Any) -> dict[str, Any]:
    """Build `{"error": {"code", "message", ...}}`."""
    return {"error": {"code": str(code), "message": message, **extra}}


def error_response(
    status: int,
    code: ErrorCode | str,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """Answer with the JSON error body."""
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


class ServiceError(Exception):
    """Something a service answers with the JSON error body instead of a result.

    Each service's root error derives from this one. A subclass names its public `code`
    (and a default `message`); what the body carries besides code and message is `extra`,
    what the response needs besides the body is `headers()`. The HTTP status comes from the
    service's status table, unless `status` is set because only the instance knows it (an
    upstream's answer relayed as it was).
    """

    code: str = ErrorCode.INTERNAL_ERROR
    message: str = "internal error"
    status: int | None = None

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.message
        super().__init__(self.message)
        self.extra = extra

    def headers(self) -> dict[str, str]:
        """Return the response headers this error needs besides the body."""
        return {}


# A service's errors and their HTTP status. `status_for` walks an error's MRO, so a subclass
# left out answers with its nearest listed parent's status.
StatusTable = dict[type[ServiceError], int]


def status_for(exc: ServiceError, table: StatusTable) -> int:
    """Return the HTTP status of an error: its own, else its class's nearest in the table."""
    if exc.status is not None:
        return exc.status
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return 500


def service_error_response(exc: ServiceError, table: StatusTable) -> JSONResponse:
    """Answer a service's error with its status from the table, its body and its headers."""
    return error_response(
        status_for(exc, table), exc.code, exc.message, headers=exc.headers(), **exc.extra
    )


# The code of an HTTP error the framework raises itself (unknown path, wrong method,
# oversized body); every other status answers `http_error`.
HTTP_CODES: dict[int, ErrorCode] = {
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    500: ErrorCode.INTERNAL_ERROR,
}

# Pydantic's error types for a body of the wrong JSON type (an array, a string, a number).
_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


def nested_too_deeply(exc: BaseException) -> bool:
    """Tell whether a body failed to parse because its JSON nests deeper than the parser goes.

    FastAPI answers any body it cannot parse, other than invalid JSON, with a 400 raised
    from the parser's error; a `RecursionError` there means the JSON was too deep.
    """
    return isinstance(exc.__cause__, RecursionError)


def _field(error: Mapping[str, Any]) -> str:
    return ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"


def invalid_fields(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """Name each field a validation error is about (`body` for the body as a whole)."""
    return [_field(error) for error in errors]


def describe_validation_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """Say what is wrong with each bad field, in one line (never the value sent)."""
    problems: list[str] = []
    for error in errors:
        kind, field = error.get("type"), _field(error)
        if kind == "json_invalid":
            problems.append("the request body is not valid JSON")
        elif field == "body" and kind == "missing":
            problems.append("a JSON request body is required")
        elif field == "body" and kind in _NOT_AN_OBJECT:
            problems.append("the request body must be a JSON object")
        else:
            message = str(error.get("msg", "invalid"))
            # Only the first letter: messages may name symbols such as BTC-USD.
            problems.append(f"{field}: {message[:1].lower()}{message[1:]}")
    return ("invalid request: " + "; ".join(problems)) if problems else "invalid request"


async def handle_validation_error(request: Request, exc: Exception) -> Response:
    """Answer a request FastAPI could not validate with 422, naming each bad field."""
    if not isinstance(exc, RequestValidationError):
        return await handle_unexpected(request, exc)
    errors = exc.errors()
    return error_response(
        422,
        ErrorCode.VALIDATION_ERROR,
        describe_validation_errors(errors),
        fields=invalid_fields(errors),
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Answer the framework's own HTTP errors (unknown path, wrong method, oversized body)."""
    if not isinstance(exc, HTTPException):
        return await handle_unexpected(request, exc)
    if nested_too_deeply(exc):
        message = "invalid request: the JSON body nests too deeply"
        return error_response(422, ErrorCode.VALIDATION_ERROR, message, fields=["body"])
    code = HTTP_CODES.get(exc.status_code, ErrorCode.HTTP_ERROR)
    message = "no such path" if exc.status_code == 404 else str(exc.detail)
    return error_response(exc.status_code, code, message, headers=exc.headers)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Answer a bug with a bare 500; the log names the exception's type, never its message."""
    logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return error_response(500, ErrorCode.INTERNAL_ERROR, "internal error")


Handler = Callable[[Request, Exception], Awaitable[Response]]

FRAMEWORK_HANDLERS: dict[type[Exception], Handler] = {
    RequestValidationError: handle_validation_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}


def exception_handlers(table: StatusTable) -> dict[type[Exception], Handler]:
    """Return the handlers of a service: its errors answered from its table, then the framework's."""

    async def handle_service_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, ServiceError):
            return await handle_unexpected(request, exc)
        return service_error_response(exc, table)

    return {ServiceError: handle_service_error, **FRAMEWORK_HANDLERS}


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


def startup_failure(error: BaseException) -> str:
    """Name why a start-up failed in one line, never with a traceback or a secret.

    Our errors' messages are written to be shown; an operating-system error (a refused
    connection, a missing file) says what it is; anything else only its type, since its
    message may hold anything.
    """
    if isinstance(error, StartupError):
        return str(error)
    if isinstance(error, ServiceError):
        return f"cannot start: {error.message}"
    if isinstance(error, OSError):
        return f"cannot start: {type(error).__name__}: {error.strerror or 'failed'}"
    return f"cannot start: unexpected {type(error).__name__} during start-up"


class StartupErrorMiddleware:
    """Report any error raised in the lifespan as one line instead of a traceback."""

    def __init__(self, app: ASGIApp, *, prefix: str = "") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_short(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # Starlette sends this from inside its `except` block, so the error is current
                # (and the message it sends is the traceback).
                error = sys.exc_info()[1]
                if error is not None:
                    message = {**message, "message": self.prefix + startup_failure(error)}
            await send(message)

        await self.app(scope, receive, send_short)
