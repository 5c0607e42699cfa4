"""Wiring of a stub service: `STUB_SERVICE_NAME=trading uvicorn services.stub.app:app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.stub.config import StubSettings, load_public_keys, load_settings
from services.stub.echo import EchoApp
from services.stub.errors import EXCEPTION_HANDLERS, StartupError
from services.stub.routes import router
from shared.assertion import AssertionVerifier
from shared.errors import StartupErrorMiddleware
from shared.keys import KeyFormatError


def create_app(
    settings: StubSettings | None = None, public_keys: list[str] | None = None
) -> FastAPI:
    """Build a stub; settings and the assertion key are read at start-up when not given."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings if settings is not None else load_settings()
        keys = public_keys if public_keys is not None else await load_public_keys()
        try:
            app.state.verifier = AssertionVerifier(keys, audience=resolved.stub_service_name)
        except (KeyFormatError, ValueError):
            raise StartupError(
                "stub cannot start: GATEWAY_ASSERTION_PUBLIC_KEY is not an Ed25519 public key"
            ) from None
        app.state.service = resolved.stub_service_name.value
        yield

    # No /docs or /openapi.json of its own: every path but /healthz is the echo, which
    # refuses a caller without a valid assertion.
    app = FastAPI(title="LegacyCoinTrader stub service", lifespan=lifespan, openapi_url=None)
    app.include_router(router)
    # After /healthz: the echo app answers every other method and path.
    app.mount("/", EchoApp(), name="echo")
    app.add_middleware(StartupErrorMiddleware)
    for exception, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(exception, handler)
    return app


app = create_app()
