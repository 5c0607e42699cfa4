"""OpenTelemetry traces: off unless the standard `OTEL_*` variables ask for an exporter.

`OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns tracing on with
the OTLP/HTTP exporter; `OTEL_TRACES_EXPORTER=console` prints spans instead; unset, `none`
or `OTEL_SDK_DISABLED=true` leaves it off, and then nothing is instrumented: no middleware,
no client hook, nothing on the request path. On, every service continues the caller's W3C
`traceparent` (FastAPI/ASGI), carries it on its own calls (aiohttp, httpx, and the gateway's
proxy client through `client_span`) and traces its
SQL (SQLAlchemy); the request id is the span attribute `lct.request_id`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.ext.asyncio import AsyncEngine

REQUEST_ID_ATTRIBUTE = "lct.request_id"
_TRUE = frozenset({"true", "1", "yes"})

_provider: Any = None
"""The process's tracer provider once tracing is on (one per process, like the exporter)."""


def tracing_requested(environ: Mapping[str, str] = os.environ) -> str | None:
    """Return the exporter the environment asks for (`otlp`, `console`), or None for off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter in ("none", "otlp", "console"):
        return None if exporter == "none" else exporter
    if exporter:
        return "otlp"  # another name: the standard default, OTLP
    endpoints = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    return "otlp" if any(environ.get(name, "").strip() for name in endpoints) else None


def tracing_on() -> bool:
    """Tell whether this process traces (a plain global: cheap on the hot path)."""
    return _provider is not None


def _start(service: str, exporter_name: str) -> Any:
    # Imported here: a process with tracing off never loads the SDK.
    from opentelemetry import trace
    from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: the OTEL_* variables
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    AioHttpClientInstrumentor().instrument(tracer_provider=provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider)
    return provider


def instrument_app(app: FastAPI, service: str) -> None:
    """Trace the app's requests when the environment asks for it; else do nothing."""
    global _provider
    exporter = tracing_requested()
    if exporter is None:
        return
    if _provider is None:
        _provider = _start(service, exporter)
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider)


def instrument_engine(engine: AsyncEngine) -> None:
    """Trace an engine's SQL when tracing is on."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared support stops below SQLAlchemy 2.1; the engine events it hooks are the same.
    SQLAlchemyInstrumentor().instrument(
        engine=engine.sync_engine, tracer_provider=_provider, skip_dep_check=True
    )


def tag_request(request_id: str) -> str | None:
    """Put the request id on the current span; return the span's trace id."""
    from opentelemetry import trace

    span = trace.get_current_span()
    span.set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextmanager
def client_span(method: str, url: str, headers: list[tuple[bytes, bytes]]) -> Iterator[Any]:
    """A CLIENT span around an outgoing request made without an instrumented library (the
    gateway's proxy client), its context added to `headers` (`traceparent`, `tracestate`)."""
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer(__name__, tracer_provider=_provider)
    with tracer.start_as_current_span(
        method,
        kind=trace.SpanKind.CLIENT,
        attributes={"http.request.method": method, "url.full": url},
    ) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        # The caller's own traceparent/tracestate give way to this span's.
        ours = {name.lower().encode("latin-1") for name in carrier}
        headers[:] = [(name, value) for name, value in headers if name not in ours]
        headers.extend(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in carrier.items()
        )
        yield span
