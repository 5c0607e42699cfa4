"""Raw ASGI middleware: request context and access log."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api_gateway.context import (
    CONTEXT_KEY,
    RequestContext,
    client_address,
    current_request,
    request_id_from,
)
from services.api_gateway.principal import AuthMethod
from services.api_gateway.state import ApiKeyUse
from shared.clock import epoch_seconds
from shared.logs import route_template, trace_id_from
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
        id_header = (b"x-request-id", context.request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                context.status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            await _record(runtime, scope, context)


async def _record(runtime: Runtime, scope: Scope, context: RequestContext) -> None:
    principal = context.principal
    status = context.status if context.status is not None else 500
    if status < 400 and scope["path"] in QUIET_PATHS:
        return
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
        await runtime.state.record_api_key_use(
            ApiKeyUse(
                key_id=principal.key_id,
                username=principal.username,
                service=context.service,
                status=status,
                client=context.client,
                at=epoch_seconds(),
            )
        )


def _route(scope: Scope, context: RequestContext) -> str | None:
    # The proxy answers `/api/...` before FastAPI's routing, so it sets no route.
    if context.service is not None or scope["path"].startswith(PROXY_PREFIX):
        return PROXY_ROUTE
    return route_template(scope)
