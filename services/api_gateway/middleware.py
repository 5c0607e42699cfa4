"""Raw ASGI middleware: request context and access log, and the `/api/` front door."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api_gateway.context import (
    CONTEXT_KEY,
    RequestContext,
    client_address,
    current_request,
    request_id_from,
)
from services.api_gateway.principal import AuthMethod
from services.api_gateway.proxy import ProxyApp, refused_query
from services.api_gateway.state import ApiKeyUse
from shared.clock import epoch_seconds
from shared.errors import handle_unexpected
from shared.logs import route_template, trace_id_from
from shared.metrics import record_request
from shared.tracing import tag_request, tracing_on

if TYPE_CHECKING:
    from services.api_gateway.runtime import Runtime

PROXY_PREFIX = "/api/"
PROXY_ROUTE = "/api/{service}/{path}"
# Probed while nothing happens (load balancers, compose): logged only when they fail.
QUIET_PATHS = frozenset({"/healthz", "/readyz"})


class AccessLogMiddleware:
    """Give every request an id and a context; log one JSON line and count API-key use."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        runtime: Runtime = scope["app"].state.runtime
        context = open_context(runtime, scope)
        id_header = (b"x-request-id", context.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            use = _record(runtime, scope, context)
            if use is not None:
                await runtime.state.record_api_key_use(use)


class ApiFront:
    """`/api/...` in one layer: what the metrics, access-log, query-string and error
    middlewares give a request, around the proxy.

    The same request through those middlewares passes six wrapping layers (FastAPI's
    telemetry check, Starlette's error middleware, ...) and four `send` wrappers; this is
    one of each.
    """

    def __init__(self, proxy: ProxyApp) -> None:
        self.proxy = proxy
        self.prefix = proxy.prefix + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime: Runtime = scope["app"].state.runtime
        context = open_context(runtime, scope)
        id_header = (b"x-request-id", context.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            if not scope["query_string"] or not await refused_query(scope, send_with_id):
                await self.proxy(scope, receive, send_with_id)
        except Exception as exc:
            # As Starlette's error middleware: a JSON 500 unless the answer has started
            # (then the server drops the connection), and the server sees the error.
            response = await handle_unexpected(Request(scope), exc)
            if context.status is None:
                await response(scope, receive, send_with_id)
            raise
        finally:
            status = context.status if context.status is not None else 500
            record_request(
                PROXY_ROUTE, scope["method"], status, time.perf_counter() - context.started
            )
            use = _record(runtime, scope, context)
            if use is not None:
                await runtime.state.record_api_key_use(use)


class GatewayApp(FastAPI):
    """FastAPI, with `/api/...` handed to `front` before any of FastAPI's own layers.

    With tracing on, `/api/` takes the long way (the middlewares, then `ProxyMount`), where
    the tracing middleware opens a span for it.
    """

    front: ApiFront | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if (
            front is not None
            and scope["type"] == "http"
            and scope["path"].startswith(front.prefix)
            and not tracing_on()
        ):
            scope["app"] = self
            await front(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def open_context(runtime: Runtime, scope: Scope) -> RequestContext:
    """Give a request its id, client address and trace id; attach them to its scope."""
    request_id = forwarded_for = traceparent = None
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            request_id = value
        elif name == b"x-forwarded-for":
            forwarded_for = value
        elif name == b"traceparent":
            traceparent = value
    peer = scope["client"][0] if scope.get("client") else None
    context = RequestContext(
        request_id=request_id_from(request_id),
        client=client_address(peer, forwarded_for, runtime.settings.gateway_trusted_proxies),
        trace_id=trace_id_from(traceparent),
    )
    if tracing_on():
        context.trace_id = tag_request(context.request_id) or context.trace_id
    scope[CONTEXT_KEY] = context
    current_request.set(context)
    return context


def _record(runtime: Runtime, scope: Scope, context: RequestContext) -> ApiKeyUse | None:
    """Queue the request's access-log line; return the API-key use to count, if any (a
    plain function: most requests have none to await)."""
    principal = context.principal
    status = context.status if context.status is not None else 500
    if status < 400 and scope["path"] in QUIET_PATHS:
        return None
    runtime.access_log.write(
        {
            "request_id": context.request_id,
            "trace_id": context.trace_id,
            "method": scope["method"],
            "route": _route(scope, context),
            "path": scope["path"],
            "status": status,
            "duration_ms": round((time.perf_counter() - context.started) * 1000, 3),
            "user": principal.username if principal else None,
            "auth_method": principal.auth_method.value if principal else None,
            "key_id": principal.key_id if principal else None,
            "upstream": context.service,
            "client": context.client,
        }
    )
    if principal is not None and principal.auth_method is AuthMethod.API_KEY and principal.key_id:
        return ApiKeyUse(
            key_id=principal.key_id,
            username=principal.username,
            service=context.service,
            status=status,
            client=context.client,
            at=epoch_seconds(),
        )
    return None


def _route(scope: Scope, context: RequestContext) -> str | None:
    # The proxy answers `/api/...` before FastAPI's routing, so it sets no route.
    if context.service is not None or scope["path"].startswith(PROXY_PREFIX):
        return PROXY_ROUTE
    return route_template(scope)
