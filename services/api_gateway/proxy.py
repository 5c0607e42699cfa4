"""`ANY /api/{service}/{path}`: authenticate, authorise, and stream to the downstream service.

This is a raw ASGI app. `ApiFront` (middleware.py) hands it every `/api/...` request before
any of FastAPI's layers; with tracing on, `ProxyMount` does, after the middlewares and before
FastAPI routes anything. Either way the hot path skips FastAPI's routing and dependency
machinery, which cost more than the proxying itself in the benchmark.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api_gateway.context import request_context
from services.api_gateway.errors import (
    CredentialsInQuery,
    Forbidden,
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    UnknownService,
    UpstreamNotReady,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_json,
    status_for,
)
from services.api_gateway.locations import LOCATION_HEADERS, public_locations
from services.api_gateway.metrics import UPSTREAM_TIMERS, UpstreamCause, upstream_failed
from services.api_gateway.upstream import (
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    Pool,
    PoolClosed,
    ReadTimeout,
    Response,
)
from shared.assertion import ASSERTION_HEADER, IDENTITY_HEADERS
from shared.roles import SERVICES, Service
from shared.tracing import client_span, tracing_on

if TYPE_CHECKING:
    from services.api_gateway.runtime import Runtime


ASSERTION_NAME = ASSERTION_HEADER.lower().encode()
SERVICES_BY_NAME = {service.value: service for service in SERVICES}
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Never forwarded: the caller's credentials, anything claiming an identity, and headers
# the gateway sets itself.
REQUEST_DROP = HOP_BY_HOP | {
    b"host",
    b"authorization",
    b"x-api-key",
    b"cookie",
    b"expect",
    b"x-request-id",
    b"forwarded",
    b"x-forwarded-for",
    b"x-forwarded-host",
    b"x-forwarded-proto",
    b"x-real-ip",
    *(name.encode() for name in IDENTITY_HEADERS),
}
# uvicorn adds its own date and server headers; x-request-id is ours.
RESPONSE_DROP = HOP_BY_HOP | {b"date", b"server", b"x-request-id"}
# Methods the proxy forwards; TRACE, CONNECT and made-up ones are answered 405 here.
PROXY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ALLOW = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# Query parameters that carry a credential (compared lower-case, `-` read as `_`): a
# query string ends up in logs, browser history and Referer headers, so the gateway
# refuses the request instead of forwarding it.
CREDENTIAL_PARAMETERS = frozenset(
    {
        b"access_token",
        b"api_key",
        b"apikey",
        b"auth",
        b"auth_token",
        b"authorization",
        b"bearer",
        b"client_secret",
        b"current_password",
        b"id_token",
        b"jwt",
        b"new_password",
        b"passwd",
        b"password",
        b"pwd",
        b"refresh_token",
        b"secret",
        b"service_token",
        b"token",
        b"x_api_key",
        b"x_service_token",
    }
)
BUFFER_LIMIT = 256 * 1024

# Lower-layer errors to ours (and the cause the metrics count), most specific first.
UPSTREAM_ERRORS: tuple[tuple[type[BaseException], type[GatewayError], str, UpstreamCause], ...] = (
    (
        ConnectTimeout,
        UpstreamUnavailable,
        "did not accept a connection in time",
        UpstreamCause.CONNECT_TIMEOUT,
    ),
    (ReadTimeout, UpstreamTimeout, "did not answer in time", UpstreamCause.TIMEOUT),
    (TimeoutError, UpstreamTimeout, "did not answer in time", UpstreamCause.TIMEOUT),
    (ConnectFailed, UpstreamUnavailable, "is unreachable", UpstreamCause.UNREACHABLE),
    (
        ConnectionBroken,
        UpstreamUnavailable,
        "broke the connection",
        UpstreamCause.CONNECTION_BROKEN,
    ),
)


class ClientGone(Exception):
    """The caller disconnected before its request body arrived."""


async def send_error(send: Send, exc: GatewayError) -> None:
    """Answer with the JSON error body of `exc`."""
    body = error_json(exc)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in exc.headers().items()),
    ]
    await send({"type": "http.response.start", "status": status_for(exc), "headers": headers})
    await send({"type": "http.response.body", "body": body})


def credential_parameter(query: bytes) -> str | None:
    """Return the name of a credential the query string carries, or None."""
    # `;` separates parameters too for some frameworks.
    for field in query.replace(b";", b"&").split(b"&"):
        name = field.partition(b"=")[0]
        if b"%" in name or b"+" in name:
            name = unquote_to_bytes(name.replace(b"+", b" "))
        # `api-key`, `API_KEY` and PHP-style `api_key[]` all reach some framework as a key.
        name = name.strip().lower().replace(b"-", b"_").partition(b"[")[0]
        if name in CREDENTIAL_PARAMETERS:
            return name.decode()
    return None


async def refused_query(scope: Scope, send: Send) -> bool:
    """Answer 400 when the query string carries a credential; tell whether it did."""
    parameter = credential_parameter(scope["query_string"])
    if parameter is None:
        return False
    await send_error(
        send,
        CredentialsInQuery(
            f"credentials must not be sent in the query string (found "
            f"{parameter!r}); send them in the Authorization or X-API-Key header"
        ),
    )
    return True


class ProxyMount:
    """Refuse credentials in a query string; send `/api/...` straight to the proxy and
    everything else on to FastAPI.

    A Starlette `Mount` would do the same after FastAPI's router has tried every route,
    which costs more per request than the proxying itself.
    """

    def __init__(self, app: ASGIApp, *, proxy: ProxyApp) -> None:
        self.app = app
        self.proxy = proxy
        self._prefix = proxy.prefix + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["query_string"] and await refused_query(scope, send):
                return
            if scope["path"].startswith(self._prefix):
                await self.proxy(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ProxyApp:
    """The raw ASGI app behind `/api`."""

    def __init__(self, prefix: str = "/api") -> None:
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            return
        runtime: Runtime = scope["app"].state.runtime
        context = request_context(scope)
        try:
            await self._forward(runtime, scope, receive, send)
        except GatewayError as exc:
            if context.status is not None:
                raise  # the response already started: abort the connection
            await send_error(send, exc)
        except ClientGone:
            return

    async def _forward(self, runtime: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in PROXY_METHODS:
            raise MethodNotAllowed(
                f"the gateway does not forward this method; allowed: {ALLOW}", allow=ALLOW
            )
        context = request_context(scope)
        headers, authorization, api_key, has_body = _request_headers(
            scope, context.request_id, context.client
        )
        principal = await runtime.authenticator.authenticate(authorization, api_key)
        context.principal = principal

        path: str = scope["path"]
        name, _, remainder = path[len(self.prefix) + 1 :].partition("/")
        service = SERVICES_BY_NAME.get(name)
        if service is None:
            known = ", ".join(SERVICES_BY_NAME)
            raise UnknownService(f"unknown service {name!r}; known services: {known}")
        context.service = service.value
        segments = remainder.split("/")
        if "." in segments or ".." in segments:
            raise NotFound("no such path: '.' and '..' segments are not allowed")
        if service is Service.PORTFOLIO and _first_segment(segments) == "internal":
            # The identity service's internal API is never reachable through the proxy.
            raise NotFound("no such path")
        if not principal.may_reach(service):
            raise Forbidden(f"your roles do not grant access to the {service.value} service")

        pool = runtime.pools[service]
        target = pool.base_path + _upstream_path(scope, self.prefix, name, remainder)
        if scope["query_string"]:
            target += b"?" + scope["query_string"]
        headers.append((ASSERTION_NAME, runtime.assertions.get(principal, service)))
        body = await _request_body(scope, receive) if has_body else None
        if tracing_on():
            url = pool.origin + target.decode("latin-1")
            with client_span(scope["method"], url, headers) as span:
                status = await self._exchange(
                    pool, service, name, scope, send, runtime, target, headers, body
                )
                span.set_attribute("http.response.status_code", status)
        else:
            await self._exchange(pool, service, name, scope, send, runtime, target, headers, body)

    async def _exchange(
        self,
        pool: Pool,
        service: Service,
        name: str,
        scope: Scope,
        send: Send,
        runtime: Runtime,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> int:
        """Send the request on, relay the answer; return the downstream's status."""
        started = time.perf_counter()
        try:
            response = await pool.request(scope["method"], target, headers, body)
            try:
                await _relay(
                    response, scope, send, runtime.upstream_urls, service, f"{self.prefix}/{name}"
                )
                return response.status
            finally:
                response.release()
        except ClientGone:
            raise
        except PoolClosed:
            upstream_failed(service, 503, UpstreamCause.SHUTTING_DOWN)
            raise UpstreamNotReady("the gateway is shutting down") from None
        except Exception as exc:
            for lower, ours, message, cause in UPSTREAM_ERRORS:
                if isinstance(exc, lower):
                    error = ours(f"the {service.value} service {message}")
                    upstream_failed(service, status_for(error), cause)
                    raise error from None
            raise
        finally:
            UPSTREAM_TIMERS[service].observe(time.perf_counter() - started)


def _first_segment(segments: list[str]) -> str:
    return next((segment.lower() for segment in segments if segment), "")


def _upstream_path(scope: Scope, prefix: str, name: str, remainder: str) -> bytes:
    # Forward the path exactly as the client encoded it when we can find our prefix in it.
    raw: bytes | None = scope.get("raw_path")
    if raw is not None:
        raw = raw.split(b"?", 1)[0]  # some servers (and httpx's ASGI transport) include the query
    ours = f"{prefix}/{name}".encode()
    if raw is not None and raw.startswith(ours) and raw[len(ours) : len(ours) + 1] in (b"/", b""):
        return raw[len(ours) :] or b"/"
    return b"/" + quote(remainder, safe="/:@!$&'()*+,;=-._~").encode("ascii")


def _request_headers(
    scope: Scope, request_id: str, client: str | None
) -> tuple[list[tuple[bytes, bytes]], str | None, str | None, bool]:
    """Walk the request's headers once: return those to forward (the gateway's own
    added), the `Authorization` and `X-API-Key` values, and whether a body is framed
    (`Content-Length` or `Transfer-Encoding`)."""
    headers: list[tuple[bytes, bytes]] = []
    authorization = api_key = None
    named: set[bytes] | None = None
    has_body = False
    for pair in scope["headers"]:
        name = pair[0]
        if name in REQUEST_DROP:
            if name == b"authorization":
                authorization = pair[1].decode("latin-1")
            elif name == b"x-api-key":
                api_key = pair[1].decode("latin-1")
            elif name == b"connection":
                # Every Connection header's tokens, which may name headers before it.
                named = named or set()
                named.update(token.strip().lower() for token in pair[1].split(b","))
            elif name == b"transfer-encoding":
                has_body = True
            continue
        if name == b"content-length":
            has_body = True
        headers.append(pair)
    if named:
        headers = [pair for pair in headers if pair[0] not in named]
    headers.append((b"x-request-id", request_id.encode("latin-1")))
    if client is not None:
        headers.append((b"x-forwarded-for", client.encode("latin-1")))
    headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode("latin-1")))
    return headers, authorization, api_key, has_body


async def _request_body(scope: Scope, receive: Receive) -> bytes | AsyncIterator[bytes] | None:
    length: int | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                raise InvalidRequest("the Content-Length header is not a number") from None
        elif name == b"transfer-encoding":
            chunked = True
    if length is None and not chunked:
        return None
    if length is not None and length <= BUFFER_LIMIT:
        return await _read_body(receive)
    return _stream_body(receive)


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _stream_body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body"):
            return


async def _relay(
    response: Response,
    scope: Scope,
    send: Send,
    upstream_urls: Mapping[Service, str],
    service: Service,
    public_prefix: str,
) -> None:
    # One pass over the answer's headers (names already lower-cased by the client); the
    # headers a Connection header names, which may come before it, go in a second one.
    headers: list[tuple[bytes, bytes]] = []
    named: set[bytes] | None = None
    locations = False
    for pair in response.headers:
        name = pair[0]
        if name in RESPONSE_DROP:
            if name == b"connection":
                named = named or set()
                named.update(token.strip().lower() for token in pair[1].split(b","))
            continue
        if name in LOCATION_HEADERS:
            locations = True
        headers.append(pair)
    if named:
        headers = [pair for pair in headers if pair[0] not in named]
    if locations:
        headers = public_locations(headers, upstream_urls, service, public_prefix)
    start: Message = {"type": "http.response.start", "status": response.status, "headers": headers}
    length = response.content_length
    if scope["method"] == "HEAD" or (length is not None and length <= BUFFER_LIMIT):
        # Small answers are read whole first, so a failure still gets a clean 502.
        body = await response.read()
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    await send(start)
    async for chunk in response.chunks():
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
