"""Wiring of the API gateway: `uvicorn services.api_gateway.app:app` (port 8000)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.api_gateway import mfa, users
from services.api_gateway.config import GatewaySecrets, Settings
from services.api_gateway.errors import EXCEPTION_HANDLERS
from services.api_gateway.middleware import AccessLogMiddleware, ApiFront, GatewayApp
from services.api_gateway.proxy import ProxyApp, ProxyMount
from services.api_gateway.routes import routers
from services.api_gateway.runtime import open_runtime
from shared.docs import add_offline_docs
from shared.errors import StartupErrorMiddleware
from shared.limits import BodyLimit
from shared.logs import configure_logging
from shared.metrics import MetricsMiddleware
from shared.redirects import use_relative_slash_redirects
from shared.tracing import instrument_app


def create_app(
    settings: Settings | None = None, secrets: GatewaySecrets | None = None
) -> GatewayApp:
    """Build the gateway; settings and secrets are read at start-up when not given."""
    configure_logging("gateway")

    @asynccontextmanager
    async def lifespan(app: GatewayApp) -> AsyncIterator[None]:
        async with open_runtime(settings, secrets) as runtime:
            app.state.runtime = runtime
            # Start-up objects live as long as the process: keep the collector off them, so
            # full collections stay short and do not show up in tail latency.
            gc.freeze()
            yield

    app = GatewayApp(
        title="LegacyCoinTrader API gateway",
        version="1.0.0",
        summary="Authentication, role-to-service RBAC and the proxy to downstream services.",
        description=(
            "`ANY /api/{service}/{path}` proxies to portfolio, trading, market, strategy, "
            "token, execution or monitoring for a caller whose roles grant the service, with "
            "`Authorization: Bearer <token>` or `X-API-Key: <key>`. The portfolio's REST API "
            "is listed below as clients reach it; the other services are not."
        ),
        lifespan=lifespan,
        # Served by routes.openapi (the portfolio's API merged in) and shared.docs (no CDN).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    for router in (*routers, *users.routers, *mfa.routers):
        app.include_router(router)
    add_offline_docs(app)
    use_relative_slash_redirects(app.router)
    # Inside ProxyMount: the gateway's own endpoints read small bodies; the proxy streams.
    app.add_middleware(BodyLimit)
    # `/api/...` is a raw ASGI app reached before FastAPI's routing and dependencies, and
    # (`front`) before every middleware, whose work for it `ApiFront` does in one layer.
    proxy = ProxyApp("/api")
    app.add_middleware(ProxyMount, proxy=proxy)
    app.front = ApiFront(proxy)
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(MetricsMiddleware, mounts={"/api/": "/api/{service}/{path}"})
    app.add_middleware(StartupErrorMiddleware)
    for exception, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    instrument_app(app, "gateway")
    return app


app = create_app()
