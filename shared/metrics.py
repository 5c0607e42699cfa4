"""Prometheus metrics every service shares: the request metrics and `GET /metrics`.

`MetricsMiddleware` counts every HTTP request and times it by route template (never the raw
path), method and status class, and answers `GET /metrics` with the exposition only to a
caller presenting `Authorization: Bearer <METRICS_SCRAPE_TOKEN>`; everyone else is passed on
to the app, which answers as it answers any unknown path (404). The token is the
`metrics_token` of the app's runtime (`app.state.runtime`); without one nobody gets metrics.

With several worker processes (`uvicorn --workers N`) set `PROMETHEUS_MULTIPROC_DIR` to an
empty directory, writable by the service, before it starts: every worker then writes its
values there and a scrape of any worker sums them all (prometheus-client's multiprocess
mode). Gauges say how they combine (`multiprocess_mode`).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess
from pydantic import SecretStr
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRICS_PATH = "/metrics"
SCRAPE_TOKEN_SECRET = "METRICS_SCRAPE_TOKEN"  # noqa: S105  # nosec B105 - a secret's name
MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

# A route label for a request no route matched: its raw path would be unbounded.
UNMATCHED = "unmatched"
# Methods counted by name; anything else a client makes up is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds; a proxied request takes ~1 ms, a login (Argon2id) ~0.5 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# No `*_created` series: one more sample per child that no dashboard or rule reads.
disable_created_metrics()  # type: ignore[no-untyped-call]

REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template, method and status class.",
    ("route", "method", "status"),
)
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route template, method and "
    "status class.",
    ("route", "method", "status"),
    buckets=LATENCY_BUCKETS,
)


def multiprocess_dir() -> str | None:
    """Return the directory of multiprocess mode, or None in single-process mode."""
    return os.environ.get(MULTIPROC_DIR_VARIABLE) or None


def exposition() -> bytes:
    """Return the text exposition of every metric (all workers' in multiprocess mode)."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def status_class(status: int) -> str:
    """Return `2xx`, `4xx`, ... for a status code."""
    return f"{status // 100}xx"


def route_template(scope: Scope, mounts: Mapping[str, str] = {}) -> str:
    """Return the template of the route that answered (`/admin/users/{username}`), the
    template of the raw mount whose prefix the path starts with, or `unmatched`."""
    route = scope.get("route")
    if route is not None:
        template = getattr(route, "path_format", None) or getattr(route, "path", None)
        if isinstance(template, str):
            # A mount (static files, a sub-app) matches a whole subtree.
            return template if hasattr(route, "endpoint") else template + "/{path}"
    path: str = scope.get("path", "")
    for prefix, template in mounts.items():
        if path.startswith(prefix):
            return template
    return UNMATCHED


def presented_token_matches(scope: Scope, token: SecretStr | None) -> bool:
    """Whether the request presents `Authorization: Bearer <token>` (constant time)."""
    if token is None:
        return False
    expected = token.get_secret_value().encode()
    if not expected:
        return False
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, presented = value.partition(b" ")
            if scheme.lower() != b"bearer":
                return False
            return hmac.compare_digest(presented.strip(), expected)
    return False


def _runtime(scope: Scope) -> Any:
    return getattr(getattr(scope.get("app"), "state", None), "runtime", None)


def _scrape_token(scope: Scope) -> SecretStr | None:
    token = getattr(_runtime(scope), "metrics_token", None)
    return token if isinstance(token, SecretStr) else None


class MetricsMiddleware:
    """Count and time every HTTP request; serve `GET /metrics` to the scrape token alone.

    `mounts` maps a path prefix to the template of a raw ASGI mount that FastAPI's router
    never sees (the gateway's `/api/` proxy).
    """

    def __init__(self, app: ASGIApp, *, mounts: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.mounts = dict(mounts or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, _marking_dead_on_shutdown(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (
            scope["path"] == METRICS_PATH
            and scope["method"] == "GET"
            and presented_token_matches(scope, _scrape_token(scope))
        ):
            # A gauge only a scrape can read (the frontend's live sessions) is read now.
            refresh = getattr(_runtime(scope), "refresh_metrics", None)
            if refresh is not None:
                await refresh()
            await _send_exposition(send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        record_request(route_template(scope, self.mounts), scope["method"], status, seconds)


# (route, method, status class) -> bound children: one dict lookup per request instead of
# `.labels()` (a lock and a tuple) twice. Bounded: every key is a route template, a known
# method and a status class.
_CHILDREN: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}


def record_request(route: str, method: str, status: int, seconds: float) -> None:
    """Count and time one answered request (`route` a template, never a raw path)."""
    key = (route, method if method in METHODS else "other", status_class(status))
    children = _CHILDREN.get(key)
    if children is None:
        children = (REQUESTS.labels(*key), REQUEST_SECONDS.labels(*key))
        _CHILDREN[key] = children
    children[0].inc()
    children[1].observe(seconds)


async def _send_exposition(send: Send) -> None:
    body = exposition()
    headers = [
        (b"content-type", CONTENT_TYPE_LATEST.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _marking_dead_on_shutdown(send: Send) -> Send:
    async def send_marking(message: Message) -> None:
        if message["type"] == "lifespan.shutdown.complete" and multiprocess_dir() is not None:
            # A worker that ends takes its live gauges (sessions, pool use) out of the sum.
            prometheus_multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
        await send(message)

    return send_marking
