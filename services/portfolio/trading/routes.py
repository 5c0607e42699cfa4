"""The portfolio REST API: positions and trades of the caller the gateway vouches for.

The gateway maps `/api/portfolio/<path>` here; every route needs its identity assertion.
"""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from services.portfolio.trading.deps import CallerDep, TradeBookDep, TradeInDep
from services.portfolio.trading.schemas import (
    PositionBody,
    PositionsOut,
    SummaryOut,
    TradeIn,
    TradePage,
    TradeReceipt,
)
from shared.docs import inline_schema
from shared.errors import error_responses

REPLAYED_HEADER = "Idempotent-Replayed"

router = APIRouter(tags=["portfolio"], responses=error_responses(401, 403, 404, 409, 422, 503))

_TRADE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(TradeIn)}},
    }
}


@router.get("/positions")
async def list_positions(caller: CallerDep, book: TradeBookDep) -> PositionsOut:
    """List the caller's open positions, by symbol."""
    return PositionsOut(positions=await book.positions(caller.username))


# `:path` so BTC/USD works unencoded as well as BTC-USD.
@router.get("/positions/{symbol:path}")
async def get_position(symbol: str, caller: CallerDep, book: TradeBookDep) -> PositionBody:
    """Return the caller's open position in one symbol."""
    return PositionBody(position=await book.position(caller.username, symbol))


@router.post(
    "/trades",
    status_code=201,
    openapi_extra=_TRADE_BODY,
    responses={200: {"model": TradeReceipt, "description": "a replay of an earlier request"}},
)
async def record_trade(
    caller: CallerDep,
    order: TradeInDep,
    book: TradeBookDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> TradeReceipt:
    """Book a trade and update the position; a repeated Idempotency-Key replays the first."""
    receipt = await book.record_trade(caller.username, order, idempotency_key=idempotency_key)
    if receipt.replayed:
        response.status_code = 200
        response.headers[REPLAYED_HEADER] = "true"
    return receipt


@router.get("/trades")
async def list_trades(
    caller: CallerDep,
    book: TradeBookDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    symbol: Annotated[str | None, Query(max_length=64)] = None,
) -> TradePage:
    """Page through the caller's trades, newest first; pass `next_cursor` as `cursor`."""
    return await book.trades(caller.username, limit=limit, cursor=cursor, symbol=symbol)


@router.get("/summary")
async def summary(caller: CallerDep, book: TradeBookDep) -> SummaryOut:
    """Every position with its cost, value at the last price and P&L; totals per currency."""
    return await book.summary(caller.username)
