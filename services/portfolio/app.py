"""The portfolio service's HTTP app: `uvicorn services.portfolio.app:app --port 8003`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.portfolio import routes
from services.portfolio.accounts import routes as accounts_routes
from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import EXCEPTION_HANDLERS
from services.portfolio.runtime import open_runtime
from services.portfolio.trading import routes as trading_routes
from shared.docs import add_offline_docs
from shared.errors import StartupErrorMiddleware
from shared.limits import BodyLimit
from shared.logs import RequestLog, configure_logging
from shared.metrics import MetricsMiddleware
from shared.secrets import SecretsManager
from shared.tracing import instrument_app

# Polled while nothing happens: the gateway's identity feed and the health probes.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/internal/identity/changes"})


def create_app(
    settings: PortfolioSettings | None = None, *, secrets_manager: SecretsManager | None = None
) -> FastAPI:
    """Build the app; settings (when not given), secrets and the database are read at start-up."""
    configure_logging("portfolio")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, secrets_manager=secrets_manager) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="LegacyCoinTrader portfolio", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    add_offline_docs(app)
    app.include_router(routes.router)
    # The internal identity API stays out of /openapi.json, which the gateway proxies to
    # any portfolio user; its own document is /internal/identity/openapi.json (service token).
    app.include_router(accounts_routes.router, include_in_schema=False)
    app.include_router(trading_routes.router)
    app.add_middleware(BodyLimit)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(RequestLog, quiet=QUIET_ROUTES)
    app.add_middleware(StartupErrorMiddleware)
    for exception, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    instrument_app(app, "portfolio")
    return app


app = create_app()
