"""Errors of the portfolio service: one root, the code each answers with over HTTP, and the
exception handlers that write them (and every other failure) as the JSON error body."""

import logging
import math
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError

from shared.errors import (
    ErrorCode,
    Handler,
    ServiceError,
    StartupError,
    StatusTable,
    exception_handlers,
    handle_unexpected,
    service_error_response,
)

if TYPE_CHECKING:
    from services.portfolio.runtime import Runtime

logger = logging.getLogger("services.portfolio")


class PortfolioError(ServiceError):
    """Something the portfolio service refuses; the message is safe to show a caller."""


class ConfigurationError(StartupError):
    """The service cannot start: a required setting or secret is missing or wrong."""


class DatabaseUnavailableError(PortfolioError):
    """The configured database cannot be reached (never falls back to another one)."""

    code = ErrorCode.SERVICE_UNAVAILABLE


# The identity store (accounts).


class IdentityError(PortfolioError):
    """Something the identity store refuses."""


class InvalidCredentialsError(IdentityError):
    """Unknown user, wrong password or unknown API key (deliberately indistinguishable)."""

    code = ErrorCode.INVALID_CREDENTIALS

    def __init__(self, message: str = "invalid username or password") -> None:
        super().__init__(message)


class AccountInactiveError(IdentityError):
    """The account is deactivated."""

    code = ErrorCode.ACCOUNT_INACTIVE

    def __init__(self, message: str = "this account is deactivated") -> None:
        super().__init__(message)


class PasswordExpiredError(IdentityError):
    """The password must be rotated before the account can log in."""

    code = ErrorCode.PASSWORD_EXPIRED

    def __init__(
        self, message: str = "the password has expired; rotate it to log in", **extra: str
    ) -> None:
        super().__init__(message, **extra)


class TooManyAttemptsError(IdentityError):
    """Too many failed logins; the account is refused for `retry_after` seconds."""

    code = ErrorCode.TOO_MANY_ATTEMPTS

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"too many failed login attempts; try again in {self.retry_after} seconds",
            retry_after=self.retry_after,
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class IdentityBusyError(IdentityError):
    """Every password-hashing slot and queue place is taken; retry after `retry_after` seconds."""

    code = ErrorCode.IDENTITY_BUSY

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "the identity service is busy checking other passwords; "
            f"try again in {self.retry_after} seconds",
            retry_after=self.retry_after,
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UserNotFoundError(IdentityError):
    """No user by that name."""

    code = ErrorCode.NOT_FOUND

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"no user named {username!r}")


class UserExistsError(IdentityError):
    """A user by that name already exists."""

    code = ErrorCode.CONFLICT

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"a user named {username!r} already exists")


class LastAdminError(IdentityError):
    """A change that would leave no active admin (deactivation, deletion, roles)."""

    code = ErrorCode.CONFLICT

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(
            f"refused: {username!r} is the last active admin, and without one nobody could "
            "manage users; make another user admin first"
        )


class AccountDeletedError(IdentityError):
    """A change to a deleted account: it stays as it is, its name reserved."""

    code = ErrorCode.CONFLICT

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(
            f"the account {username!r} is deleted: it cannot be changed or signed in to again, "
            "and its name stays reserved"
        )


class ApiKeyInUseError(IdentityError):
    """The supplied API key is already held by a user."""

    code = ErrorCode.CONFLICT


class InvalidInputError(IdentityError):
    """A username, role or API key that breaks the rules; the message names the rule."""

    code = ErrorCode.VALIDATION_ERROR


class WeakPasswordError(IdentityError):
    """A new password that breaks the password policy."""

    code = ErrorCode.WEAK_PASSWORD


class MfaRequiredError(IdentityError):
    """The password checked out; a second step is due (or, with `enrol`, an enrolment)."""

    code = ErrorCode.MFA_REQUIRED

    def __init__(
        self, message: str, *, challenge: str, methods: list[str], expires_in: int, enrol: bool
    ) -> None:
        super().__init__(
            message,
            challenge=challenge,
            methods=methods,
            expires_in=expires_in,
            enrolment_required=enrol,
        )


class InvalidCodeError(InvalidCredentialsError):
    """A second-step code, recovery code or passkey assertion that does not check out."""

    def __init__(self, message: str = "invalid code") -> None:
        super().__init__(message)


class LastFactorError(IdentityError):
    """Removing the factor would leave an account that requires one without any."""

    code = ErrorCode.CONFLICT


class MfaUnavailableError(IdentityError):
    """The second factor cannot work here: its encryption key is not configured."""

    code = ErrorCode.SERVICE_UNAVAILABLE


class ServiceTokenError(IdentityError):
    """A call to the internal API without the right X-Service-Token."""

    code = ErrorCode.INVALID_TOKEN

    def __init__(self) -> None:
        super().__init__("a valid X-Service-Token header is required")


# Positions and trades (trading).


class TradingError(PortfolioError):
    """Something the positions and trades API refuses."""


class NotAuthenticatedError(TradingError):
    """A request without the gateway's identity assertion."""

    code = ErrorCode.NOT_AUTHENTICATED

    def __init__(self) -> None:
        super().__init__(
            "this endpoint needs the gateway's identity assertion; call it via the gateway"
        )


class AssertionRejectedError(TradingError):
    """An identity assertion that does not verify (bad signature, expired, wrong audience)."""

    code = ErrorCode.INVALID_TOKEN


class NoPortfolioRoleError(TradingError):
    """A verified caller whose roles do not grant the portfolio service."""

    code = ErrorCode.FORBIDDEN

    def __init__(self) -> None:
        super().__init__("the portfolio API needs the portfolio or admin role")


class InvalidTradeError(TradingError):
    """A request value that breaks a rule; `field` names it."""

    code = ErrorCode.VALIDATION_ERROR

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}", fields=[field])


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

    code = ErrorCode.NOT_FOUND

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        super().__init__(f"no open position in {symbol}")


class IdempotencyKeyReusedError(TradingError):
    """An Idempotency-Key already used for a different trade."""

    code = ErrorCode.CONFLICT

    def __init__(self) -> None:
        super().__init__(
            "this Idempotency-Key was already used for a different trade; "
            "use a new key for a new trade"
        )


# Each error's HTTP status: the status its public code has everywhere (`DEFAULT_STATUS`).
HTTP_STATUS: StatusTable = {
    PortfolioError: 500,
    DatabaseUnavailableError: 503,
    InvalidCredentialsError: 401,
    MfaRequiredError: 401,
    LastFactorError: 409,
    MfaUnavailableError: 503,
    AccountInactiveError: 403,
    PasswordExpiredError: 403,
    TooManyAttemptsError: 429,
    IdentityBusyError: 503,
    UserNotFoundError: 404,
    UserExistsError: 409,
    ApiKeyInUseError: 409,
    LastAdminError: 409,
    AccountDeletedError: 409,
    InvalidInputError: 422,
    ServiceTokenError: 401,
    WeakPasswordError: 422,
    NotAuthenticatedError: 401,
    AssertionRejectedError: 401,
    NoPortfolioRoleError: 403,
    InvalidTradeError: 422,
    PositionNotFoundError: 404,
    IdempotencyKeyReusedError: 409,
}


async def handle_database_error(request: Request, exc: Exception) -> Response:
    """Answer a lost database with 503 naming it (never its password); other failures 500."""
    runtime: Runtime = request.app.state.runtime
    unavailable = await runtime.database.diagnose(exc)
    if unavailable is None:
        return await handle_unexpected(request, exc)
    logger.error("%s", unavailable)
    return service_error_response(unavailable, HTTP_STATUS)


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    **exception_handlers(HTTP_STATUS),
    DBAPIError: handle_database_error,
    OSError: handle_database_error,
}
