"""Errors of the identity store; one root, and the code each answers with over HTTP."""

import math

from shared.errors import DEFAULT_STATUS, ErrorCode


class IdentityError(Exception):
    """Something the identity store refuses; the message is safe to show a caller."""


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


class ConfigurationError(IdentityError):
    """The service cannot start: a required setting or secret is missing or wrong."""


# Most specific first; the HTTP status of each code comes from `shared.errors.DEFAULT_STATUS`.
ERROR_CODES: dict[type[IdentityError], ErrorCode] = {
    InvalidCredentialsError: ErrorCode.INVALID_CREDENTIALS,
    AccountInactiveError: ErrorCode.ACCOUNT_INACTIVE,
    PasswordExpiredError: ErrorCode.PASSWORD_EXPIRED,
    TooManyAttemptsError: ErrorCode.TOO_MANY_ATTEMPTS,
    UserNotFoundError: ErrorCode.NOT_FOUND,
    UserExistsError: ErrorCode.CONFLICT,
    ApiKeyInUseError: ErrorCode.CONFLICT,
    InvalidInputError: ErrorCode.VALIDATION_ERROR,
    ServiceTokenError: ErrorCode.INVALID_TOKEN,
    WeakPasswordError: ErrorCode.WEAK_PASSWORD,
    DatabaseUnavailableError: ErrorCode.SERVICE_UNAVAILABLE,
    ConfigurationError: ErrorCode.INTERNAL_ERROR,
    IdentityError: ErrorCode.INTERNAL_ERROR,
}


def error_code(exc: IdentityError) -> tuple[ErrorCode, int]:
    """Return the error code and HTTP status an identity error answers with."""
    for kind, code in ERROR_CODES.items():
        if isinstance(exc, kind):
            return code, DEFAULT_STATUS[code]
    return ErrorCode.INTERNAL_ERROR, 500
