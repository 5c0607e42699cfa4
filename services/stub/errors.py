"""Stub errors: refusing to start, and JSON bodies for framework errors."""

from __future__ import annotations

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared import errors as shared_errors
from shared.errors import ErrorCode, error_body


class StartupError(shared_errors.StartupError):
    """The stub cannot start: its service name or the assertion key is missing or wrong."""


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Answer Starlette's own errors as JSON."""
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    code = ErrorCode.NOT_FOUND if exc.status_code == 404 else "http_error"
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    """Answer a bug with a bare 500 and no trace."""
    return JSONResponse(error_body(ErrorCode.INTERNAL_ERROR, "internal error"), status_code=500)


EXCEPTION_HANDLERS = {
    StarletteHTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
