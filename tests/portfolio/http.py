"""Run the portfolio app in-process (lifespan included) for HTTP tests."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from services.portfolio.app import create_app
from services.portfolio.config import PortfolioSettings
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY
from tests.portfolio.conftest import env_secrets

SERVICE_TOKEN = "service-token-for-tests-" + "s" * 24
# What the service needs at start-up.
SECRETS = {
    "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
    "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
}


@asynccontextmanager
async def open_client(
    settings: PortfolioSettings, *, token: str | None = SERVICE_TOKEN
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """Start the app with its lifespan; the client sends the service token by default."""
    app = create_app(settings, secrets_manager=env_secrets(SECRETS))
    headers = {"X-Service-Token": token} if token is not None else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://portfolio", headers=headers
        ) as client:
            yield app, client
