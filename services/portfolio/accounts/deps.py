"""Dependency aliases of the internal identity API, and the service-token gate in front of it."""

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from services.portfolio.accounts.service import IdentityService
from services.portfolio.deps import RuntimeDep, get_runtime
from services.portfolio.errors import ServiceTokenError


async def get_identity(runtime: RuntimeDep) -> IdentityService:
    """Return the identity service the runtime opened."""
    return runtime.identity


IdentityDep = Annotated[IdentityService, Depends(get_identity)]


async def require_service_token(request: Request) -> None:
    """Admit only callers presenting the internal service token (constant-time compare)."""
    expected = (await get_runtime(request)).service_token
    presented = request.headers.get("x-service-token", "").encode()
    if hmac.compare_digest(presented, expected.value.get_secret_value().encode()):
        return
    # A gateway may have read a rotated token before this process did: read it again now
    # (at most once a second, whoever asks) rather than wait for the next interval.
    if expected.refresh is not None:
        await expected.refresh()
        if hmac.compare_digest(presented, expected.value.get_secret_value().encode()):
            return
    raise ServiceTokenError()


class ServiceTokenRoute(APIRoute):
    """A route that checks the service token before anything else, the body included.

    FastAPI reads and parses a route's body before it runs the route's dependencies, so a
    dependency would let any caller make the service read a body.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            await require_service_token(request)
            return await handler(request)

        return guarded
