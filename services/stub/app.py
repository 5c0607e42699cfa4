"""Wiring of a stub service: `STUB_SERVICE_NAME=trading uvicorn services.stub.app:app`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.stub.config import STUB_SERVICES, StubSecrets, StubSettings
from services.stub.echo import EchoApp, EchoFront, StubApp
from services.stub.errors import EXCEPTION_HANDLERS
from services.stub.routes import router
from services.stub.runtime import open_runtime
from shared.errors import StartupErrorMiddleware
from shared.logs import RequestLog, configure_logging
from shared.metrics import METRICS_PATH, MetricsMiddleware
from shared.tracing import instrument_app

# Probed while nothing happens: logged only when they fail.
QUIET_ROUTES = frozenset({"/healthz", "/readyz"})


def create_app(settings: StubSettings | None = None, secrets: StubSecrets | None = None) -> StubApp:
    """Build a stub; settings and the assertion key are read at start-up when not given."""
    configure_logging(_service_name(settings))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, secrets) as runtime:
            app.state.runtime = runtime
            configure_logging(runtime.service)
            yield

    # No /docs or /openapi.json of its own: every path but /healthz is the echo, which
    # refuses a caller without a valid assertion.
    app = StubApp(title="LegacyCoinTrader stub service", lifespan=lifespan, openapi_url=None)
    app.include_router(router)
    # After /healthz: the echo app answers every other method and path.
    echo = EchoApp()
    app.mount("/", echo, name="echo")
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestLog, quiet=QUIET_ROUTES)
    app.add_middleware(StartupErrorMiddleware)
    for exception, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    # The echo's paths skip the middlewares above, whose work for them `front` does in one
    # layer; the routes' paths (any method) and `/metrics` take the long way.
    app.routed = frozenset(
        {route.path for route in router.routes if isinstance(route, APIRoute)} | {METRICS_PATH}
    )
    app.front = EchoFront(echo, handlers=EXCEPTION_HANDLERS, quiet=QUIET_ROUTES)
    instrument_app(app, _service_name(settings))
    return app


def _service_name(settings: StubSettings | None) -> str:
    """Name the stub's log lines and spans by the service it stands in for (`trading`) from
    the first line on, before the settings are read (a bad name is refused all the same)."""
    if settings is not None:
        return settings.stub_service_name.value
    name = os.environ.get("STUB_SERVICE_NAME", "").strip().lower()
    return name if name in {service.value for service in STUB_SERVICES} else "stub"


app = create_app()
