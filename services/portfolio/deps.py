"""Dependency aliases of the portfolio routes."""

import hmac
import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Annotated, Any, NoReturn

from fastapi import Depends, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import SecretStr, ValidationError

from services.portfolio.errors import (
    AssertionRejectedError,
    NoPortfolioRoleError,
    NotAuthenticatedError,
    ServiceTokenError,
)
from services.portfolio.schemas import TradeIn
from services.portfolio.service import IdentityService
from services.portfolio.store import Database
from services.portfolio.trades import TradeBook
from shared.assertion import AssertionVerifier, Caller, InvalidAssertionError
from shared.limits import PayloadTooLarge
from shared.roles import Service, can_access


def get_identity(request: Request) -> IdentityService:
    """Return the identity service the lifespan opened."""
    identity: IdentityService = request.app.state.identity
    return identity


def get_database(request: Request) -> Database:
    """Return the database the lifespan opened."""
    database: Database = request.app.state.database
    return database


def require_service_token(request: Request) -> None:
    """Admit only callers presenting the internal service token (constant-time compare)."""
    expected: SecretStr = request.app.state.service_token
    presented = request.headers.get("x-service-token", "").encode()
    if not hmac.compare_digest(presented, expected.get_secret_value().encode()):
        raise ServiceTokenError()


class ServiceTokenRoute(APIRoute):
    """A route that checks the service token before anything else, the body included.

    FastAPI reads and parses a route's body before it runs the route's dependencies, so a
    dependency would let any caller make the service read a body.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            require_service_token(request)
            return await handler(request)

        return guarded


def get_trade_book(request: Request) -> TradeBook:
    """Return the trade book the lifespan opened."""
    book: TradeBook = request.app.state.trades
    return book


async def require_caller(
    request: Request,
    x_identity_assertion: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """Return the caller the gateway's signed assertion names; nothing else says who calls."""
    if not x_identity_assertion:
        raise NotAuthenticatedError()
    verifier: AssertionVerifier = request.app.state.verifier
    try:
        caller = verifier.verify(x_identity_assertion)
    except InvalidAssertionError as exc:
        raise AssertionRejectedError(str(exc)) from None
    # The gateway checked the role already; a second look costs nothing.
    if not can_access(caller.roles, Service.PORTFOLIO):
        raise NoPortfolioRoleError()
    return caller


# A trade is four short fields; nothing legitimate comes near this.
MAX_TRADE_BODY_BYTES = 16 * 1024


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number")


async def read_trade(request: Request) -> TradeIn:
    """Parse `POST /trades`' body with JSON numbers read as exact decimals, never floats."""
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_TRADE_BODY_BYTES:
            raise PayloadTooLarge(MAX_TRADE_BODY_BYTES)
    if not raw.strip():
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "required"}])
    try:
        data: Any = json.loads(raw, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON"}]
        ) from None
    try:
        return TradeIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False, include_input=False)) from None


IdentityDep = Annotated[IdentityService, Depends(get_identity)]
DatabaseDep = Annotated[Database, Depends(get_database)]
TradeBookDep = Annotated[TradeBook, Depends(get_trade_book)]
CallerDep = Annotated[Caller, Depends(require_caller)]
TradeInDep = Annotated[TradeIn, Depends(read_trade)]
