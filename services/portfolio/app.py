"""The portfolio service's HTTP app: `uvicorn services.portfolio.app:app --port 8003`."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import SecretStr
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.portfolio import identity_routes, portfolio_routes, routes
from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import ConfigurationError, PortfolioError
from services.portfolio.service import IdentityService
from services.portfolio.store import Database
from services.portfolio.trades import TradeBook
from shared.assertion import AssertionVerifier
from shared.errors import StartupErrorMiddleware
from shared.keys import KeyFormatError
from shared.limits import BodyLimit
from shared.roles import Service
from shared.secrets import SecretsError, SecretsManager

logger = logging.getLogger("services.portfolio")

SERVICE_TOKEN_SECRET = "IDENTITY_SERVICE_TOKEN"  # noqa: S105  # nosec B105 - a secret's name
ASSERTION_KEY_SECRET = "GATEWAY_ASSERTION_PUBLIC_KEY"  # noqa: S105  # nosec B105 - a secret's name


def create_app(
    settings: PortfolioSettings | None = None, *, secrets_manager: SecretsManager | None = None
) -> FastAPI:
    """Build the app; the database, the service token and the assertion key are read at
    start-up."""
    settings = settings if settings is not None else PortfolioSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager = secrets_manager if secrets_manager is not None else _open_secrets()
        try:
            app.state.service_token = await _require_service_token(manager)
            app.state.verifier = await _assertion_verifier(manager)
            database = await Database.open(settings)
            logger.info("portfolio service using the %s", database.description)
            app.state.database = database
            app.state.identity = IdentityService(database, settings, secrets_manager=manager)
            app.state.trades = TradeBook(database)
            try:
                yield
            finally:
                await database.close()
        finally:
            if secrets_manager is None:
                await manager.aclose()

    app = FastAPI(title="LegacyCoinTrader portfolio", lifespan=lifespan)
    app.state.settings = settings
    app.include_router(routes.router)
    # The internal identity API stays out of /openapi.json, which the gateway proxies to
    # any portfolio user; its own document is /internal/identity/openapi.json (service token).
    app.include_router(identity_routes.router, include_in_schema=False)
    app.include_router(portfolio_routes.router)
    app.add_middleware(BodyLimit)
    app.add_middleware(StartupErrorMiddleware)
    app.add_exception_handler(PortfolioError, routes.domain_error_handler)
    app.add_exception_handler(RequestValidationError, routes.validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, routes.http_error_handler)
    app.add_exception_handler(DBAPIError, routes.database_error_handler)
    app.add_exception_handler(OSError, routes.database_error_handler)
    app.add_exception_handler(Exception, routes.unexpected_error_handler)
    return app


def _open_secrets() -> SecretsManager:
    try:
        return SecretsManager.from_environment()
    except SecretsError as exc:
        raise ConfigurationError(str(exc)) from None


async def _require_service_token(manager: SecretsManager) -> SecretStr:
    try:
        return await manager.require(SERVICE_TOKEN_SECRET)
    except SecretsError as exc:
        raise ConfigurationError(f"the portfolio service cannot start: {exc}") from None


async def _assertion_verifier(manager: SecretsManager) -> AssertionVerifier:
    try:
        key = await manager.require(ASSERTION_KEY_SECRET)
    except SecretsError as exc:
        raise ConfigurationError(f"the portfolio service cannot start: {exc}") from None
    try:
        return AssertionVerifier([key.get_secret_value()], audience=Service.PORTFOLIO)
    except (KeyFormatError, ValueError):
        raise ConfigurationError(
            f"the portfolio service cannot start: {ASSERTION_KEY_SECRET} is not an Ed25519 "
            "public key (PEM, or base64url of the raw 32 bytes)"
        ) from None


app = create_app()
