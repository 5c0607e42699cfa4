"""CPU cost of tracing per proxied request, in isolation: `python -m bench.tracing`.

`make bench` measures the whole gateway on shared cores, where the CPU per request moves by
more than tracing costs; this times what tracing adds to one proxied request in this
process, best of several rounds: off (the gateway's `tracing_on()` check only) and on (the
ASGI server span, the request-id attribute, the client span of the downstream call with
the `traceparent` injected, and the batch processor's queueing; spans are dropped by the
exporter, so no network or encoding is counted).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from starlette.types import Message, Receive, Scope, Send

from shared.tracing import tag_request, tracing_on


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _receive() -> Message:
    return {"type": "http.request", "body": b""}


async def _send(message: Message) -> None:
    return None


def _app(tracer: trace.Tracer | None) -> object:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if tracing_on() or tracer is not None:
            tag_request("bench-request")
        if tracer is not None:
            headers: dict[str, str] = {}
            with tracer.start_as_current_span("GET", kind=trace.SpanKind.CLIENT):
                propagate.inject(headers)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return app


async def _per_call(app: object, requests: int) -> float:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/trading/orders/42",
        "raw_path": b"/api/trading/orders/42",
        "query_string": b"",
        "headers": [(b"host", b"gateway"), (b"authorization", b"Bearer x")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    started = time.process_time()
    for _ in range(requests):
        await app(dict(scope), _receive, _send)  # type: ignore[operator]
    return (time.process_time() - started) / requests


def main(argv: list[str] | None = None) -> int:
    """Print the CPU per request with tracing off and on, best of `--rounds`."""
    parser = argparse.ArgumentParser(prog="python -m bench.tracing", description=__doc__)
    parser.add_argument("--requests", type=int, default=5000, help="requests per round (5000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, best kept (5)")
    args = parser.parse_args(argv)

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard()))
    tracer = provider.get_tracer("bench")
    off = _app(None)
    on = OpenTelemetryMiddleware(_app(tracer), tracer_provider=provider)

    async def measure() -> tuple[float, float]:
        best_off = min([await _per_call(off, args.requests) for _ in range(args.rounds)])
        best_on = min([await _per_call(on, args.requests) for _ in range(args.rounds)])
        return best_off, best_on

    best_off, best_on = asyncio.run(measure())
    provider.shutdown()
    print(f"tracing off: {best_off * 1e6:8.1f} µs CPU per request (the off check only)")
    print(f"tracing on:  {best_on * 1e6:8.1f} µs CPU per request (server + client span)")
    print(f"added by tracing on: {(best_on - best_off) * 1e6:.1f} µs per proxied request")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
