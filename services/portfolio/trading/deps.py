"""Dependency aliases of the positions and trades API: the caller the gateway vouches for,
the trade book, and the trade read from the body as exact decimals."""

import json
from decimal import Decimal
from typing import Annotated, Any, NoReturn

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.portfolio.deps import RuntimeDep
from services.portfolio.errors import (
    AssertionRejectedError,
    NoPortfolioRoleError,
    NotAuthenticatedError,
)
from services.portfolio.trading.schemas import TradeIn
from services.portfolio.trading.service import TradeBook
from shared.assertion import Caller, InvalidAssertionError
from shared.limits import PayloadTooLarge
from shared.logs import note_user
from shared.roles import Service, can_access


async def get_trade_book(runtime: RuntimeDep) -> TradeBook:
    """Return the trade book the runtime opened."""
    return runtime.trades


async def require_caller(
    runtime: RuntimeDep,
    x_identity_assertion: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Caller:
    """Return the caller the gateway's signed assertion names; nothing else says who calls."""
    if not x_identity_assertion:
        raise NotAuthenticatedError()
    try:
        caller = runtime.verifier.verify(x_identity_assertion)
    except InvalidAssertionError as exc:
        raise AssertionRejectedError(str(exc)) from None
    note_user(caller.username)
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


TradeBookDep = Annotated[TradeBook, Depends(get_trade_book)]
CallerDep = Annotated[Caller, Depends(require_caller)]
TradeInDep = Annotated[TradeIn, Depends(read_trade)]
