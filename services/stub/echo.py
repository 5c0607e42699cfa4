"""Every method and path but the stub's routes: echo the verified caller (a raw ASGI app),
and the front layer that answers those paths ahead of FastAPI's stack.

The stub is the upstream of the benchmark, so its hot path skips FastAPI's routing and
dependency machinery the same way the gateway's proxy does, and (`EchoFront`) its
middlewares as the gateway's `/api/` does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from contextvars import Token

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from services.stub.errors import AssertionRefused
from services.stub.runtime import Runtime
from shared import logs, metrics
from shared.assertion import ASSERTION_HEADER, REQUEST_ID_HEADER, InvalidAssertionError
from shared.errors import Handler, handle_unexpected
from shared.logs import note_user
from shared.tracing import tracing_on

_ASSERTION = ASSERTION_HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()
# `json.dumps` with any option builds a new encoder per call; the echo uses this one.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


async def _send_json(send: Send, status: int, payload: object) -> None:
    body = _ENCODER.encode(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class EchoApp:
    """Answer `{"service", "method", "path", "user", "roles", "request_id"}` from the assertion."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        runtime: Runtime = scope["app"].state.runtime
        assertion = request_id = None
        for name, value in scope["headers"]:
            if name == _ASSERTION:
                assertion = value.decode("latin-1")
            elif name == _REQUEST_ID:
                request_id = value.decode("latin-1")
        # Drain the body so keep-alive connections stay usable.
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        try:
            caller = runtime.verifier.verify(assertion)
        except InvalidAssertionError as exc:
            # Answered by the app's handler, like any other error.
            raise AssertionRefused(f"refused: {exc}") from None
        note_user(caller.username)
        await _send_json(
            send,
            200,
            {
                "service": caller.service,
                "method": scope["method"],
                "path": scope["path"],
                "user": caller.username,
                "roles": list(caller.roles),
                "request_id": request_id,
            },
        )


class EchoFront:
    """The echo in one layer: what the request-log, metrics and error middlewares give it.

    Through those middlewares an echo passes FastAPI's telemetry check, Starlette's error
    and exception middlewares, the router and the mount, and three `send` wrappers; this is
    one of each. `handlers` are the app's exception handlers, looked up as Starlette's
    exception middleware does; anything they do not answer is answered as Starlette's error
    middleware answers it (the JSON 500, sent without the request id, the error raised on).
    """

    def __init__(
        self,
        echo: EchoApp,
        *,
        handlers: Mapping[type[Exception], Handler],
        quiet: frozenset[str] = frozenset(),
    ) -> None:
        self.echo = echo
        # `Exception` is the error middleware's, outside the request log, as in Starlette.
        self.handlers = {cls: h for cls, h in handlers.items() if cls is not Exception}
        self.quiet = quiet
        self.logger = logging.getLogger(logs.REQUEST_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        context, token = logs.open_request(scope)
        id_header = (b"x-request-id", context.request_id.encode())
        status: int | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            try:
                await self.echo(scope, receive, send_with_id)
            except Exception as exc:
                handler = self._handler(exc)
                if handler is None:
                    raise
                if status is not None:
                    raise RuntimeError(
                        "Caught handled exception, but response already started."
                    ) from exc
                response = await handler(Request(scope, receive), exc)
                await response(scope, receive, send_with_id)
        except Exception as exc:
            answered = status is not None
            self._record(scope, context, token, started, status)
            response = await handle_unexpected(Request(scope), exc)
            if not answered:
                await response(scope, receive, send)
            raise
        except BaseException:
            # A cancelled request (the client went away) is still counted and logged.
            self._record(scope, context, token, started, status)
            raise
        self._record(scope, context, token, started, status)

    def _handler(self, exc: Exception) -> Handler | None:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                return handler
        return None

    def _record(
        self,
        scope: Scope,
        context: logs.RequestContext,
        token: Token[logs.RequestContext | None],
        started: float,
        status: int | None,
    ) -> None:
        # In the order of the middlewares' `finally` blocks: the metrics, then the line.
        answered = status if status is not None else 500
        metrics.record_request(
            metrics.route_template(scope), scope["method"], answered, time.perf_counter() - started
        )
        logs.close_request(token)
        logs.log_request(self.logger, scope, context, answered, quiet=self.quiet)


class StubApp(FastAPI):
    """FastAPI, with every path but its own routes handed to `front` before its layers.

    With tracing on, the echo takes the long way (the middlewares, then the mount), where
    the tracing middleware opens a span for it.
    """

    front: EchoFront | None = None
    # Paths FastAPI's stack answers itself (its routes, `GET /metrics`), whatever the method.
    routed: frozenset[str] = frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if (
            front is not None
            and scope["type"] == "http"
            and scope["path"] not in self.routed
            and not tracing_on()
        ):
            scope["app"] = self
            await front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
