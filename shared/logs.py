"""The log format every service writes: one JSON object per line, on stderr.

`configure_logging(service)` (called by each `create_app`) routes the application's loggers
and uvicorn's own through one JSON formatter; `RequestLog` writes one line per request
(the gateway writes its own, in access_log.py, off its hot path). Inside a request every
line carries its request id. No line holds a query string, a traceback or an exception's
message: an exception is logged by its type only.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import tag_request, tracing_on

REQUEST_LOGGER = "lct.request"
# The loggers of our own code log INFO and up; libraries (httpx logs every request at INFO,
# the identity feed's polls included) stay at WARNING.
OWN_LOGGERS = ("services", "shared", "lct", "uvicorn")
# uvicorn says this after the one line naming the cause, which is all an operator needs.
_REDUNDANT = frozenset({"Application startup failed. Exiting."})
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_TRACEPARENT = re.compile(rb"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_NO_TRACE = "0" * 32
# A random per-process prefix and a counter: unique across processes without a getrandom()
# call per request.
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)
# `json.dumps` with any option builds a new encoder per call; a line is formatted by this one.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
# What `logging` records for a line whose caller it does not look up.
_NO_FILE, _NO_FUNCTION = "(unknown file)", "(unknown function)"


@dataclass
class RequestContext:
    """What the lines written inside one request share; `user` is filled in once known."""

    request_id: str
    trace_id: str | None = None
    user: str | None = None
    started: float = field(default_factory=time.perf_counter)


_current: ContextVar[RequestContext | None] = ContextVar("lct_request", default=None)


def current_request() -> RequestContext | None:
    """Return the context of the request being served, if any."""
    return _current.get()


def note_user(username: str) -> None:
    """Name the caller of the request being served in its request line."""
    context = _current.get()
    if context is not None:
        context.user = username


def trace_id_from(traceparent: bytes | None) -> str | None:
    """Return the trace id of a W3C `traceparent` header, or None when it is not one."""
    if traceparent is None:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None or match.group(1) == _NO_TRACE.encode():
        return None
    return match.group(1).decode()


def sane_request_id(header: bytes | None) -> str:
    """Return the caller's `X-Request-ID` when it is short and plain, else a new one."""
    if header is not None:
        value = header.decode("latin-1")
        if _SANE_REQUEST_ID.fullmatch(value):
            return value
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def utc_time(seconds: float) -> str:
    """Format an epoch time as the lines' `time` field (ISO 8601, milliseconds, `Z`)."""
    text = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: time, level, service, logger, message, context."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname.lower(),
            "service": self.service,
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            entry.update(request)
        else:
            entry["logger"] = record.name
            entry["message"] = record.getMessage()
            context = _current.get()
            if context is not None:
                entry["request_id"] = context.request_id
                if context.trace_id:
                    entry["trace_id"] = context.trace_id
            if record.exc_info and record.exc_info[0] is not None:
                # The type only: a message or a traceback may hold a secret or a path.
                entry["exception"] = record.exc_info[0].__name__
        return _ENCODER.encode(entry)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes to whatever `sys.stderr` is at the time."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr (tests swap it)


def _not_redundant(record: logging.LogRecord) -> bool:
    return record.getMessage() not in _REDUNDANT


def configure_logging(service: str) -> None:
    """Send every log line of this process as JSON to stderr, named by `service`."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(_not_redundant)
    root.addHandler(handler)
    for name in ("uvicorn", "uvicorn.error"):
        # uvicorn's own handlers write plain text; its lines go through ours instead.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # uvicorn's access line holds the query string: no handler and no propagation, which
    # its protocol reads as "access log off" whatever the command line said.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    for name in OWN_LOGGERS:
        own = logging.getLogger(name)
        if own.level == logging.NOTSET or own.level > logging.INFO:
            own.setLevel(logging.INFO)


def route_template(scope: Scope) -> str | None:
    """Return the template of the route that served a request (`/users/{username}`)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if route is not None and hasattr(route, "routes"):  # a mount: its prefix and the rest
        return f"{path}/{{path}}"
    return path


class RequestLog:
    """Write one JSON line per HTTP request; a quiet route is logged only when it fails.

    Quiet routes are the ones polled while nothing happens (health probes, the identity
    feed), so an idle service stays silent.
    """

    def __init__(self, app: ASGIApp, *, quiet: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.quiet = quiet
        self.logger = logging.getLogger(REQUEST_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context, token = open_request(scope)
        status = 500
        id_header = (b"x-request-id", context.request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            close_request(token)
            log_request(self.logger, scope, context, status, quiet=self.quiet)


def open_request(scope: Scope) -> tuple[RequestContext, Token[RequestContext | None]]:
    """Give a request its id and trace id and make it the current one; reset the token after."""
    request_id = traceparent = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value
        elif name == b"traceparent":
            traceparent = value
    context = RequestContext(sane_request_id(request_id), trace_id_from(traceparent))
    if tracing_on():
        context.trace_id = tag_request(context.request_id) or context.trace_id
    return context, _current.set(context)


def close_request(token: Token[RequestContext | None]) -> None:
    """End the request `open_request` made current: no line after this carries its id."""
    _current.reset(token)


def log_request(
    logger: logging.Logger,
    scope: Scope,
    context: RequestContext,
    status: int,
    *,
    quiet: frozenset[str] = frozenset(),
) -> None:
    """Write the one line of an answered request, unless its route is quiet and it succeeded."""
    route = route_template(scope)
    if route in quiet and status < 400:
        return
    level = logging.ERROR if status >= 500 else logging.INFO
    if not logger.isEnabledFor(level):
        return
    request = {
        "request_id": context.request_id,
        "trace_id": context.trace_id,
        "method": scope["method"],
        "route": route,
        # scope["path"] never holds the query string.
        "path": scope["path"],
        "status": status,
        "duration_ms": round((time.perf_counter() - context.started) * 1000, 3),
        "user": context.user,
    }
    # As `logger.log(level, "request", extra=...)` without looking up the caller's frame,
    # which no line shows and which costs as much as formatting the line.
    record = logger.makeRecord(
        logger.name, level, _NO_FILE, 0, "request", (), None, _NO_FUNCTION, {"request": request}
    )
    logger.handle(record)
