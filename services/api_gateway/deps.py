"""Dependency aliases of the gateway's own endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from services.api_gateway.context import RequestContext, request_context
from services.api_gateway.errors import Forbidden
from services.api_gateway.principal import Principal
from services.api_gateway.runtime import Runtime

# Declared for the OpenAPI docs; the authenticator reads the raw headers itself.
bearer_scheme = HTTPBearer(auto_error=False, description="An access token from /auth/token")
api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key issued by the identity store"
)


def get_runtime(request: Request) -> Runtime:
    """Return the runtime the lifespan built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


def get_context(request: Request) -> RequestContext:
    """Return the request's context (id, client address)."""
    return request_context(request.scope)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
ContextDep = Annotated[RequestContext, Depends(get_context)]


async def current_principal(
    request: Request,
    runtime: RuntimeDep,
    context: ContextDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
) -> Principal:
    """Authenticate the caller by bearer token or API key."""
    principal = await runtime.authenticator.authenticate(
        request.headers.get("authorization"), api_key
    )
    context.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    """Require the admin role."""
    if not principal.is_admin:
        raise Forbidden("this endpoint needs the admin role")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]
