"""CPU cost of the metrics per proxied request, in isolation: `python -m bench.metrics`.

`make bench` measures the whole gateway, whose CPU per request moves by more than the
metrics cost whenever other processes share the cores; this times just what the metrics add
to one proxied request (the shared middleware around a bare ASGI app, and the gateway's own
`inc()`/`observe()` calls of that request) in this process, best of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

from starlette.types import Message, Receive, Scope, Send

from services.api_gateway import metrics as gateway_metrics
from shared.metrics import MetricsMiddleware
from shared.roles import Service

PROXY_TEMPLATE = {"/api/": "/api/{service}/{path}"}


async def _bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


async def _per_call(app: object, requests: int) -> float:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/trading/orders/42",
        "headers": [],
        "app": SimpleNamespace(state=SimpleNamespace(runtime=None)),
    }
    started = time.process_time()
    for _ in range(requests):
        await app(dict(scope), _receive, _send)  # type: ignore[operator]
    return (time.process_time() - started) / requests


def _gateway_calls(requests: int) -> float:
    """The gateway's own metric calls of one JWT-proxied request."""
    success = gateway_metrics.AUTH_SUCCESS[gateway_metrics.Credential.JWT]
    hit = gateway_metrics.TOKEN_CACHE_HIT
    timer = gateway_metrics.UPSTREAM_TIMERS[Service.TRADING]
    started = time.process_time()
    for _ in range(requests):
        success.inc()
        hit.inc()
        begun = time.perf_counter()
        timer.observe(time.perf_counter() - begun)
    return (time.process_time() - started) / requests


async def measure(requests: int, rounds: int) -> tuple[float, float, float]:
    """Return the best per-request CPU seconds of: a bare app, it wrapped, the gateway calls."""
    wrapped = MetricsMiddleware(_bare, mounts=PROXY_TEMPLATE)
    bare = middleware = calls = float("inf")
    for _ in range(rounds):
        bare = min(bare, await _per_call(_bare, requests))
        middleware = min(middleware, await _per_call(wrapped, requests))
        calls = min(calls, _gateway_calls(requests))
    return bare, middleware, calls


def main() -> None:
    """Print the metrics' CPU cost per proxied request in microseconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    bare, middleware, calls = asyncio.run(measure(options.requests, options.rounds))
    added = (middleware - bare) + calls
    print(f"metrics middleware: {(middleware - bare) * 1e6:.2f} µs/request")
    print(f"gateway metric calls of a JWT-proxied request: {calls * 1e6:.2f} µs/request")
    print(f"metrics in all: {added * 1e6:.2f} µs of CPU per proxied request")


if __name__ == "__main__":
    main()
