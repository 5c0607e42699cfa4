"""Frontend errors: one root, and the HTTP status each answers with."""

from typing import Any

from shared.errors import ErrorCode, StartupError

SESSION_EXPIRED = "session_expired"
CSRF_FAILED = "csrf_failed"


class FrontendError(Exception):
    """Root of every frontend error."""

    code: str = ErrorCode.INTERNAL_ERROR
    message: str = "something went wrong"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class StartupRefusedError(FrontendError, StartupError):
    """The frontend cannot start: a required secret is missing or too weak."""


class SessionError(FrontendError):
    """The browser has no usable session."""


class LoginRequiredError(SessionError):
    """The browser never signed in (or signed out)."""

    code = ErrorCode.NOT_AUTHENTICATED
    message = "sign in first"


class SessionExpiredError(SessionError):
    """The session timed out, or the gateway no longer accepts its token."""

    code = SESSION_EXPIRED
    message = "your session expired; sign in again"


class CsrfError(FrontendError):
    """A form arrived without the session's CSRF token."""

    code = CSRF_FAILED
    message = "the form's CSRF token is missing or does not match this session; reload the page"


class PageNotFoundError(FrontendError):
    """No such page, or no such service."""

    code = ErrorCode.NOT_FOUND
    message = "no such page"


class PayloadTooLargeError(FrontendError):
    """A form post larger than the frontend reads."""

    code = ErrorCode.PAYLOAD_TOO_LARGE
    message = "the form is too large"


class GatewayError(FrontendError):
    """The gateway answered with an error body."""

    def __init__(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.extra = extra or {}


class GatewayUnavailableError(FrontendError):
    """The gateway could not be reached."""

    code = ErrorCode.UPSTREAM_UNAVAILABLE
    message = "the gateway is unreachable; try again shortly"


class GatewayTimeoutError(FrontendError):
    """The gateway did not answer in time."""

    code = ErrorCode.UPSTREAM_TIMEOUT
    message = "the gateway did not answer in time; try again shortly"


# Most specific first: the first class an error is an instance of decides its status.
STATUS: dict[type[FrontendError], int] = {
    LoginRequiredError: 401,
    SessionExpiredError: 401,
    CsrfError: 403,
    PageNotFoundError: 404,
    PayloadTooLargeError: 413,
    GatewayUnavailableError: 502,
    GatewayTimeoutError: 504,
    FrontendError: 500,
}


def status_of(error: FrontendError) -> int:
    """Return the HTTP status an error answers with."""
    if isinstance(error, GatewayError):
        return error.status
    return next(status for kind, status in STATUS.items() if isinstance(error, kind))
