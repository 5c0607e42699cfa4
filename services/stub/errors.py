"""Stub errors: one root, their HTTP status in one table, the handlers, and refusing to start."""

from __future__ import annotations

from shared import errors as shared_errors
from shared.errors import ErrorCode, Handler, ServiceError, StatusTable, exception_handlers


class StubError(ServiceError):
    """Something a stub answers with a JSON error instead of the echo."""


class AssertionRefused(StubError):
    """The gateway's identity assertion is missing, forged, expired or for another service."""

    code = ErrorCode.INVALID_TOKEN


class StartupError(shared_errors.StartupError):
    """The stub cannot start: its service name or the assertion key is missing or wrong."""


HTTP_STATUS: StatusTable = {
    AssertionRefused: 401,
    StubError: 500,
}

EXCEPTION_HANDLERS: dict[type[Exception], Handler] = exception_handlers(HTTP_STATUS)
