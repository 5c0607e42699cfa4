"""Dependency aliases of the internal identity API, and the service-token gate in front of it."""

import hmac
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute

from services.portfolio.accounts.audit import AuditContext
from services.portfolio.accounts.service import IdentityService
from services.portfolio.deps import RuntimeDep, get_runtime
from services.portfolio.errors import ServiceTokenError


async def get_identity(runtime: RuntimeDep) -> IdentityService:
    """Return the identity service the runtime opened."""
    return runtime.identity


IdentityDep = Annotated[IdentityService, Depends(get_identity)]

# Set by the gateway (behind the service token) on calls made for one of its requests.
AUDIT_ACTOR_HEADER = "x-audit-actor"
AUDIT_CLIENT_HEADER = "x-audit-client"
REQUEST_ID_HEADER = "x-request-id"


async def get_audit_context(request: Request) -> AuditContext:
    """Return who the gateway says is asking, and from where, for the audit trail."""
    headers = request.headers
    return AuditContext.from_untrusted(
        headers.get(AUDIT_ACTOR_HEADER),
        headers.get(AUDIT_CLIENT_HEADER),
        headers.get(REQUEST_ID_HEADER),
    )


AuditDep = Annotated[AuditContext, Depends(get_audit_context)]


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
