"""Dependency aliases of the portfolio routes."""

import hmac
from typing import Annotated

from fastapi import Depends, Header, Request
from pydantic import SecretStr

from services.portfolio.errors import ServiceTokenError
from services.portfolio.service import IdentityService
from services.portfolio.store import Database


def get_identity(request: Request) -> IdentityService:
    """Return the identity service the lifespan opened."""
    identity: IdentityService = request.app.state.identity
    return identity


def get_database(request: Request) -> Database:
    """Return the database the lifespan opened."""
    database: Database = request.app.state.database
    return database


def require_service_token(
    request: Request,
    x_service_token: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    """Admit only callers presenting the internal service token (constant-time compare)."""
    expected: SecretStr = request.app.state.service_token
    presented = (x_service_token or "").encode()
    if not hmac.compare_digest(presented, expected.get_secret_value().encode()):
        raise ServiceTokenError()


IdentityDep = Annotated[IdentityService, Depends(get_identity)]
DatabaseDep = Annotated[Database, Depends(get_database)]
ServiceTokenDep = Depends(require_service_token)
