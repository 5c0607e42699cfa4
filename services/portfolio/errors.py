"""Errors of the portfolio service: one root, the code each answers with over HTTP, and the
exception handlers that write them (and every other failure) as the JSON error body."""

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import DEFAULT_STATUS, ErrorCode, StartupError, error_body
from shared.limits import nested_too_deeply

if TYPE_CHECKING:
    from services.portfolio.runtime import Runtime

logger = logging.getLogger("services.portfolio")


class PortfolioError(Exception):
    """Something the portfolio service refuses; the message is safe to show a caller."""

    def extra(self) -> dict[str, Any]:
        """Return the keys this error adds to the JSON error body."""
        return {}

    def headers(self) -> dict[str, str]:
        """Return the response headers this error needs besides the body."""
        return {}


class ConfigurationError(PortfolioError, StartupError):
    """The service cannot start: a required setting or secret is missing or wrong."""


class DatabaseUnavailableError(PortfolioError):
    """The configured database cannot be reached (never falls back to another one)."""


# The identity store (accounts).


class IdentityError(PortfolioError):
    """Something the identity store refuses."""


class InvalidCredentialsError(IdentityError):
    """Unknown user, wrong password or unknown API key (deliberately indistinguishable)."""

    def __init__(self, message: str = "invalid username or password") -> None:
        super().__init__(message)


class AccountInactiveError(IdentityError):
    """The account is deactivated."""

    def __init__(self, message: str = "this account is deactivated") -> None:
        super().__init__(message)


class PasswordExpiredError(IdentityError):
    """The password must be rotated before the account can log in."""

    def __init__(self, message: str = "the password has expired; rotate it to log in") -> None:
        super().__init__(message)


class TooManyAttemptsError(IdentityError):
    """Too many failed logins; the account is refused for `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"too many failed login attempts; try again in {self.retry_after} seconds")

    def extra(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IdentityBusyError(IdentityError):
    """Every password-hashing slot and queue place is taken; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "the identity service is busy checking other passwords; "
            f"try again in {self.retry_after} seconds"
        )

    def extra(self) -> dict[str, Any]:
        return {"retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UserNotFoundError(IdentityError):
    """No user by that name."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"no user named {username!r}")


class UserExistsError(IdentityError):
    """A user by that name already exists."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"a user named {username!r} already exists")


class ApiKeyInUseError(IdentityError):
    """The supplied API key is already held by a user."""


class InvalidInputError(IdentityError):
    """A username, role or API key that breaks the rules; the message names the rule."""


class WeakPasswordError(IdentityError):
    """A new password that breaks the password policy."""


class ServiceTokenError(IdentityError):
    """A call to the internal API without the right X-Service-Token."""

    def __init__(self) -> None:
        super().__init__("a valid X-Service-Token header is required")


# Positions and trades (trading).


class TradingError(PortfolioError):
    """Something the positions and trades API refuses."""


class NotAuthenticatedError(TradingError):
    """A request without the gateway's identity assertion."""

    def __init__(self) -> None:
        super().__init__(
            "this endpoint needs the gateway's identity assertion; call it via the gateway"
        )


class AssertionRejectedError(TradingError):
    """An identity assertion that does not verify (bad signature, expired, wrong audience)."""


class NoPortfolioRoleError(TradingError):
    """A verified caller whose roles do not grant the portfolio service."""

    def __init__(self) -> None:
        super().__init__("the portfolio API needs the portfolio or admin role")


class InvalidTradeError(TradingError):
    """A request value that breaks a rule; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")

    def extra(self) -> dict[str, Any]:
        return {"fields": [self.field]}


class InsufficientPositionError(InvalidTradeError):
    """A sell of more than the position holds (short selling is not supported)."""

    def __init__(self, symbol: str, held: str, wanted: str) -> None:
        super().__init__(
            "quantity",
            f"cannot sell {wanted} {symbol}: the position holds {held} "
            "(short selling is not supported)",
        )


class PositionNotFoundError(TradingError):
    """The caller holds no open position in the symbol."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        super().__init__(f"no open position in {symbol}")


class IdempotencyKeyReusedError(TradingError):
    """An Idempotency-Key already used for a different trade."""

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different trade; "
            "use a new key for a new trade"
        )


# Most specific first; the HTTP status of each code comes from `shared.errors.DEFAULT_STATUS`.
ERROR_CODES: dict[type[PortfolioError], ErrorCode] = {
    InvalidCredentialsError: ErrorCode.INVALID_CREDENTIALS,
    AccountInactiveError: ErrorCode.ACCOUNT_INACTIVE,
    PasswordExpiredError: ErrorCode.PASSWORD_EXPIRED,
    TooManyAttemptsError: ErrorCode.TOO_MANY_ATTEMPTS,
    IdentityBusyError: ErrorCode.IDENTITY_BUSY,
    UserNotFoundError: ErrorCode.NOT_FOUND,
    UserExistsError: ErrorCode.CONFLICT,
    ApiKeyInUseError: ErrorCode.CONFLICT,
    InvalidInputError: ErrorCode.VALIDATION_ERROR,
    ServiceTokenError: ErrorCode.INVALID_TOKEN,
    WeakPasswordError: ErrorCode.WEAK_PASSWORD,
    IdentityError: ErrorCode.INTERNAL_ERROR,
    NotAuthenticatedError: ErrorCode.NOT_AUTHENTICATED,
    AssertionRejectedError: ErrorCode.INVALID_TOKEN,
    NoPortfolioRoleError: ErrorCode.FORBIDDEN,
    InvalidTradeError: ErrorCode.VALIDATION_ERROR,
    PositionNotFoundError: ErrorCode.NOT_FOUND,
    IdempotencyKeyReusedError: ErrorCode.CONFLICT,
    DatabaseUnavailableError: ErrorCode.SERVICE_UNAVAILABLE,
    ConfigurationError: ErrorCode.INTERNAL_ERROR,
    PortfolioError: ErrorCode.INTERNAL_ERROR,
}


def error_code(exc: PortfolioError) -> tuple[ErrorCode, int]:
    """Return the error code and HTTP status a portfolio error answers with."""
    for kind, code in ERROR_CODES.items():
        if isinstance(exc, kind):
            return code, DEFAULT_STATUS[code]
    return ErrorCode.INTERNAL_ERROR, 500


# The JSON error body, as OpenAPI documents it.


class ErrorDetail(BaseModel):
    """What went wrong: a stable code and a readable message (extra keys may follow)."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """The JSON error body every endpoint answers with."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """Document the error statuses of a router in its OpenAPI description."""
    return {status: {"model": ErrorBody} for status in statuses}


# Exception handlers.


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a domain error with its code and status from the errors table."""
    if not isinstance(exc, PortfolioError):
        return await unexpected_error_handler(request, exc)
    code, status = error_code(exc)
    return JSONResponse(
        error_body(code, str(exc), **exc.extra()), status_code=status, headers=exc.headers()
    )


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer FastAPI's 422 in the JSON error body, naming each bad field (never its value)."""
    if not isinstance(exc, RequestValidationError):
        return await unexpected_error_handler(request, exc)
    problems: list[str] = []
    fields: list[str] = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
        if error.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON")
            continue
        field = ".".join(location) or "body"
        fields.append(field)
        if field == "body" and error.get("type") == "missing":
            problems.append("a JSON request body is required")
        elif field == "body":
            problems.append("the request body must be a JSON object")
        else:
            message = str(error.get("msg", "invalid"))
            # Only the first letter: messages may name symbols such as BTC-USD.
            problems.append(f"{field}: {message[:1].lower()}{message[1:]}")
    message = "invalid request: " + "; ".join(problems)
    return JSONResponse(
        error_body(ErrorCode.VALIDATION_ERROR, message, fields=fields), status_code=422
    )


HTTP_CODES: dict[int, str] = {
    404: ErrorCode.NOT_FOUND,
    405: "method_not_allowed",
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer routing errors (404, 405) and oversized bodies (413) in the JSON error body."""
    if not isinstance(exc, StarletteHTTPException):
        return await unexpected_error_handler(request, exc)
    if nested_too_deeply(exc):
        # Answered like any other body that is not JSON (as `read_trade` does).
        invalid = [{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON"}]
        return await validation_error_handler(request, RequestValidationError(invalid))
    code = HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a lost database with 503 naming it (never its password); other failures 500."""
    runtime: Runtime = request.app.state.runtime
    unavailable = await runtime.database.diagnose(exc)
    if unavailable is None:
        return await unexpected_error_handler(request, exc)
    logger.error("%s", unavailable)
    return JSONResponse(
        error_body(ErrorCode.SERVICE_UNAVAILABLE, str(unavailable)), status_code=503
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer anything else with 500 and no stack trace."""
    logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return JSONResponse(
        error_body(ErrorCode.INTERNAL_ERROR, "internal error; see the service log"),
        status_code=500,
    )


Handler = Callable[[Request, Exception], Awaitable[Response]]

EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    PortfolioError: domain_error_handler,
    RequestValidationError: validation_error_handler,
    StarletteHTTPException: http_error_handler,
    DBAPIError: database_error_handler,
    OSError: database_error_handler,
    Exception: unexpected_error_handler,
}
