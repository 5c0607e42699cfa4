"""Wiring of the frontend: lifespan, middleware, routes, error handlers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.frontend.config import FrontendSecrets, Settings
from services.frontend.errors import EXCEPTION_HANDLERS
from services.frontend.middleware import SecurityHeaders
from services.frontend.routes import router
from services.frontend.runtime import open_runtime
from services.frontend.sessions import SessionStore
from services.frontend.templating import STATIC_DIR
from shared.errors import StartupErrorMiddleware
from shared.limits import BodyLimit
from shared.logs import RequestLog, configure_logging
from shared.metrics import MetricsMiddleware
from shared.redirects import use_relative_slash_redirects
from shared.tracing import instrument_app


def create_app(
    settings: Settings | None = None,
    secrets: FrontendSecrets | None = None,
    *,
    session_store: SessionStore | None = None,
) -> FastAPI:
    """Build the frontend; what is not given is read at start-up (environment, secrets layer)."""
    configure_logging("frontend")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, secrets, session_store=session_store) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="LegacyCoinTrader frontend",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestLog, quiet=frozenset({"/healthz", "/readyz"}))
    app.add_middleware(StartupErrorMiddleware, prefix="frontend refused to start: ")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    use_relative_slash_redirects(app.router)
    for exception, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    instrument_app(app, "frontend")
    return app


app = create_app()
