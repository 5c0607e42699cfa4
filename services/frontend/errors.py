"""Frontend errors: one root, their HTTP status in one table, and the handlers that answer a
browser with a page and the page's own script with the JSON error body."""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from services.frontend import metrics
from services.frontend.metrics import SessionEnd
from services.frontend.pages import clear_session_cookie, redirect, render, runtime_of
from services.frontend.sessions import Session
from shared import errors as shared_errors
from shared.errors import (
    FRAMEWORK_HANDLERS,
    ErrorCode,
    Handler,
    ServiceError,
    StatusTable,
    handle_unexpected,
    service_error_response,
    status_for,
)
from shared.roles import is_admin

SESSION_EXPIRED = "session_expired"
CSRF_FAILED = "csrf_failed"


class FrontendError(ServiceError):
    """Root of every frontend error."""

    message = "something went wrong"


class StartupError(shared_errors.StartupError):
    """The frontend cannot start: a setting is wrong, or the session secret missing or weak."""


class SessionError(FrontendError):
    """The browser has no usable session; a script is told where to sign in."""

    login_url = "/login"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, login_url=self.login_url)


class LoginRequiredError(SessionError):
    """The browser never signed in (or signed out)."""

    code = ErrorCode.NOT_AUTHENTICATED
    message = "sign in first"


class SessionExpiredError(SessionError):
    """The session timed out, or the gateway no longer accepts its token."""

    code = SESSION_EXPIRED
    message = "your session expired; sign in again"
    login_url = "/login?expired=1"


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
    """The gateway answered with an error body; its status and code are passed on as they are."""

    status: int

    def __init__(
        self, status: int, code: str, message: str, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        # The gateway's extra keys (`retry_after`, ...): read here, not repeated to our callers.
        self.details = details or {}


class GatewayUnavailableError(FrontendError):
    """The gateway could not be reached."""

    code = ErrorCode.UPSTREAM_UNAVAILABLE
    message = "the gateway is unreachable; try again shortly"


class GatewayTimeoutError(FrontendError):
    """The gateway did not answer in time."""

    code = ErrorCode.UPSTREAM_TIMEOUT
    message = "the gateway did not answer in time; try again shortly"


class SessionStoreUnavailable(FrontendError):
    """The shared session store (Redis) cannot be reached."""

    code = ErrorCode.SERVICE_UNAVAILABLE
    message = (
        "sign-in is unavailable for the moment (the session store cannot be reached); "
        "try again shortly"
    )


# Most specific first; a `GatewayError` answers with the gateway's own status.
HTTP_STATUS: StatusTable = {
    LoginRequiredError: 401,
    SessionExpiredError: 401,
    CsrfError: 403,
    PageNotFoundError: 404,
    PayloadTooLargeError: 413,
    GatewayUnavailableError: 502,
    GatewayTimeoutError: 504,
    SessionStoreUnavailable: 503,
    FrontendError: 500,
}


def wants_json(request: Request) -> bool:
    """Tell a page's own background request (JSON) from a page load (HTML)."""
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/session/") or (
        "application/json" in accept and "text/html" not in accept
    )


async def handle_session_error(request: Request, exc: Exception) -> Response:
    """End the session (if any) and send the browser to the login page."""
    if not isinstance(exc, SessionError):
        return await handle_frontend_error(request, exc)
    session_id = getattr(request.state, "session_id", None)
    if session_id is not None and isinstance(exc, SessionExpiredError):
        gone = getattr(request.state, "session_gone", False)
        metrics.session_ended(SessionEnd.EXPIRED if gone else SessionEnd.TOKEN_REFUSED)
    if session_id is not None:
        # The browser is signed out here either way; an unreachable store logged its state.
        with suppress(SessionStoreUnavailable):
            await runtime_of(request).sessions.delete(session_id)
    response: Response
    if wants_json(request):
        response = service_error_response(exc, HTTP_STATUS)
    else:
        response = redirect(exc.login_url)
    clear_session_cookie(response, request)
    return response


async def page_session_of(request: Request) -> Session | None:
    """Return the browser's session for an error page, also where no route read it (404)."""
    runtime = runtime_of(request)
    session_id = getattr(request.state, "session_id", None)
    if session_id is None:
        value = request.cookies.get(runtime.cookie_name)
        session_id = runtime.cookie_signer.unsign(value) if value else None
    return await runtime.sessions.get(session_id) if session_id is not None else None


def way_back(path: str, session: Session | None) -> tuple[str, str]:
    """Return the link (URL, words) an error page offers back: to the Users list after an
    admin's action on a user (the last admin's refusal, say), else to the start page."""
    admin = session is not None and session.is_authenticated and is_admin(session.roles)
    if admin and path.startswith("/admin/users/"):
        return "/admin/users", "Users"
    return "/", "the start page"


async def handle_frontend_error(request: Request, exc: Exception) -> Response:
    """Answer a frontend or gateway error as JSON or as an error page."""
    if not isinstance(exc, FrontendError):
        return await handle_unexpected(request, exc)
    if wants_json(request):
        return service_error_response(exc, HTTP_STATUS)
    status = status_for(exc, HTTP_STATUS)
    session = None
    if not isinstance(exc, SessionStoreUnavailable):
        # An error page keeps the menu of a signed-in user; without a store, no menu.
        with suppress(SessionStoreUnavailable):
            session = await page_session_of(request)
    back_url, back_to = way_back(request.url.path, session)
    return await render(
        request,
        "error.html",
        session=session,
        status_code=status,
        status=status,
        code=exc.code,
        message=exc.message,
        back_url=back_url,
        back_to=back_to,
    )


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Answer an unknown page and an oversized form like our own errors, the rest as JSON."""
    if not isinstance(exc, HTTPException):
        return await handle_unexpected(request, exc)
    if exc.status_code == 404:
        return await handle_frontend_error(request, PageNotFoundError())
    if exc.status_code == 413:
        return await handle_frontend_error(request, PayloadTooLargeError(str(exc.detail)))
    return await shared_errors.handle_http_exception(request, exc)


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    SessionError: handle_session_error,
    FrontendError: handle_frontend_error,
    **FRAMEWORK_HANDLERS,
    HTTPException: handle_http_exception,
}
