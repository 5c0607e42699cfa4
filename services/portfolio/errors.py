"""Errors of the portfolio service; one root, and the code each answers with over HTTP."""

import math

from shared.errors import DEFAULT_STATUS, ErrorCode, StartupError


class PortfolioError(Exception):
    """Something the portfolio service refuses; the message is safe to show a caller."""


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


class IdentityBusyError(IdentityError):
    """Every password-hashing slot and queue place is taken; retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            "the identity service is busy checking other passwords; "
            f"try again in {self.retry_after} seconds"
        )


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


class DatabaseUnavailableError(IdentityError):
    """The configured database cannot be reached (never falls back to another one)."""


class ConfigurationError(IdentityError, StartupError):
    """The service cannot start: a required setting or secret is missing or wrong."""


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
    DatabaseUnavailableError: ErrorCode.SERVICE_UNAVAILABLE,
    ConfigurationError: ErrorCode.INTERNAL_ERROR,
    IdentityError: ErrorCode.INTERNAL_ERROR,
    NotAuthenticatedError: ErrorCode.NOT_AUTHENTICATED,
    AssertionRejectedError: ErrorCode.INVALID_TOKEN,
    NoPortfolioRoleError: ErrorCode.FORBIDDEN,
    InvalidTradeError: ErrorCode.VALIDATION_ERROR,
    PositionNotFoundError: ErrorCode.NOT_FOUND,
    IdempotencyKeyReusedError: ErrorCode.CONFLICT,
    PortfolioError: ErrorCode.INTERNAL_ERROR,
}


def error_code(exc: PortfolioError) -> tuple[ErrorCode, int]:
    """Return the error code and HTTP status a portfolio error answers with."""
    for kind, code in ERROR_CODES.items():
        if isinstance(exc, kind):
            return code, DEFAULT_STATUS[code]
    return ErrorCode.INTERNAL_ERROR, 500
