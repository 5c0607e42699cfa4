"""The trade book: every user's positions and trades, each trade booked exactly once."""

import logging
import re
from decimal import Decimal, localcontext

from sqlalchemy.exc import IntegrityError

from services.portfolio import metrics
from services.portfolio.db import MONEY_CONTEXT, Database
from services.portfolio.errors import (
    IdempotencyKeyReusedError,
    InvalidTradeError,
    PositionNotFoundError,
)
from services.portfolio.trading import store
from services.portfolio.trading.booking import Book, apply_trade, fit
from services.portfolio.trading.models import Position, Trade
from services.portfolio.trading.schemas import (
    SYMBOL_RULE,
    CurrencyTotals,
    PositionOut,
    PositionSummary,
    Side,
    SummaryOut,
    TradeIn,
    TradeOut,
    TradePage,
    TradeReceipt,
    canonical_symbol,
    quote_currency,
)
from shared.clock import Clock, utcnow

logger = logging.getLogger("services.portfolio.trades")

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN = re.compile(r"[\x20-\x7e]{1,200}")
CURSOR_PATTERN = re.compile(r"[1-9][0-9]{0,18}")
# Trade ids are BIGINT: a larger cursor would overflow the database driver (a 500).
MAX_CURSOR = 2**63 - 1


def check_idempotency_key(key: str | None) -> str | None:
    """Return a valid Idempotency-Key header value, or raise `InvalidTradeError`."""
    if key is None or IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        return key
    raise InvalidTradeError(IDEMPOTENCY_KEY_HEADER, "must be 1 to 200 printable ASCII characters")


def parse_symbol(raw: str) -> str:
    """Return the canonical form of a symbol from a path or query, or raise `InvalidTradeError`."""
    try:
        return canonical_symbol(raw)
    except ValueError:
        raise InvalidTradeError("symbol", f"must be {SYMBOL_RULE}") from None


def parse_cursor(raw: str | None) -> int | None:
    """Return the trade id a cursor from `next_cursor` stands for."""
    if raw is None:
        return None
    if not CURSOR_PATTERN.fullmatch(raw) or int(raw) > MAX_CURSOR:
        raise InvalidTradeError("cursor", "must be a next_cursor value from an earlier page")
    return int(raw)


class TradeBook:
    """Every user's positions and trades, over one database."""

    def __init__(self, database: Database, *, clock: Clock = utcnow) -> None:
        self.database = database
        self._clock = clock

    async def record_trade(
        self, username: str, order: TradeIn, *, idempotency_key: str | None = None
    ) -> TradeReceipt:
        """Book a trade and update its position in one transaction; a key books at most once."""
        key = check_idempotency_key(idempotency_key)
        fingerprint = order.fingerprint() if key is not None else None
        if key is not None:
            earlier = await self._replay(username, key, fingerprint)
            if earlier is not None:
                return earlier
        try:
            async with self.database.sessions.begin() as session:
                await store.lock_for_writing(session)
                now = self._clock()
                position = await store.lock_position(
                    session, username=username, symbol=order.symbol, now=now
                )
                book, realized = apply_trade(
                    _book(position),
                    symbol=order.symbol,
                    side=order.side,
                    quantity=order.quantity,
                    price=order.price,
                )
                trade = await store.add_trade(
                    session,
                    Trade(
                        username=username,
                        symbol=order.symbol,
                        side=order.side.value,
                        quantity=order.quantity,
                        price=order.price,
                        realized_pnl=realized,
                        executed_at=now,
                        idempotency_key=key,
                        request_fingerprint=fingerprint,
                    ),
                )
                position.quantity = book.quantity
                position.cost_basis = book.cost_basis
                position.realized_pnl = book.realized_pnl
                position.last_price = order.price
                position.trade_count += 1
                position.updated_at = now
        except IntegrityError:
            if key is None:
                raise
            # A concurrent request with the same key won the race: answer with its trade.
            winner = await self._replay(username, key, fingerprint)
            if winner is None:
                raise
            return winner
        logger.info("booked trade %s: %s %s %s", trade.id, username, order.side.value, order.symbol)
        metrics.trade_booked(order.side.value)
        return TradeReceipt(trade=_trade(trade), position=_position(position), replayed=False)

    async def positions(self, username: str) -> list[PositionOut]:
        """Return the user's open positions, by symbol."""
        async with self.database.sessions() as session:
            rows = await store.list_positions(session, username=username, open_only=True)
        return [_position(row) for row in rows]

    async def position(self, username: str, symbol: str) -> PositionOut:
        """Return the user's open position in `symbol`."""
        canonical = parse_symbol(symbol)
        async with self.database.sessions() as session:
            row = await store.get_position(session, username=username, symbol=canonical)
        if row is None or row.quantity.is_zero():
            raise PositionNotFoundError(canonical)
        return _position(row)

    async def trades(
        self, username: str, *, limit: int, cursor: str | None = None, symbol: str | None = None
    ) -> TradePage:
        """Return one page of the user's trades, newest first."""
        before_id = parse_cursor(cursor)
        canonical = parse_symbol(symbol) if symbol is not None else None
        async with self.database.sessions() as session:
            # One extra row tells whether another page follows.
            rows = await store.list_trades(
                session, username=username, limit=limit + 1, before_id=before_id, symbol=canonical
            )
        page = rows[:limit]
        next_cursor = str(page[-1].id) if len(rows) > limit else None
        return TradePage(trades=[_trade(row) for row in page], next_cursor=next_cursor)

    async def summary(self, username: str) -> SummaryOut:
        """Value every position the user ever traded at its last price; total per currency."""
        async with self.database.sessions() as session:
            rows = await store.list_positions(session, username=username, open_only=False)
        positions = [_summary(row) for row in rows if row.trade_count > 0]
        totals: dict[str, CurrencyTotals] = {}
        zero = Decimal(0)
        for item in positions:
            current = totals.get(item.quote_currency) or CurrencyTotals(
                quote_currency=item.quote_currency,
                cost_basis=zero,
                market_value=zero,
                unrealized_pnl=zero,
                realized_pnl=zero,
            )
            with localcontext(MONEY_CONTEXT):
                totals[item.quote_currency] = CurrencyTotals(
                    quote_currency=item.quote_currency,
                    cost_basis=current.cost_basis + item.cost_basis,
                    market_value=current.market_value + item.market_value,
                    unrealized_pnl=current.unrealized_pnl + item.unrealized_pnl,
                    realized_pnl=current.realized_pnl + item.realized_pnl,
                )
        return SummaryOut(positions=positions, totals=[totals[c] for c in sorted(totals)])

    async def _replay(
        self, username: str, key: str, fingerprint: str | None
    ) -> TradeReceipt | None:
        """Return the trade booked earlier under `key`, or None if there is none."""
        async with self.database.sessions() as session:
            trade = await store.get_trade_by_key(session, username=username, idempotency_key=key)
            if trade is None:
                return None
            if trade.request_fingerprint != fingerprint:
                raise IdempotencyKeyReusedError()
            position = await store.get_position(session, username=username, symbol=trade.symbol)
        if position is None:  # positions are never deleted; a trade implies one
            return None
        return TradeReceipt(trade=_trade(trade), position=_position(position), replayed=True)


def _book(position: Position) -> Book:
    return Book(
        quantity=position.quantity,
        cost_basis=position.cost_basis,
        realized_pnl=position.realized_pnl,
    )


def _trade(trade: Trade) -> TradeOut:
    with localcontext(MONEY_CONTEXT):
        value = fit(trade.quantity * trade.price)
    return TradeOut(
        id=trade.id,
        symbol=trade.symbol,
        side=Side(trade.side),
        quantity=trade.quantity,
        price=trade.price,
        value=value,
        realized_pnl=trade.realized_pnl,
        executed_at=trade.executed_at,
        idempotency_key=trade.idempotency_key,
    )


def _position(position: Position) -> PositionOut:
    return PositionOut(
        symbol=position.symbol,
        quantity=position.quantity,
        average_cost=_book(position).average_cost,
        cost_basis=position.cost_basis,
        realized_pnl=position.realized_pnl,
        last_price=position.last_price,
        trade_count=position.trade_count,
        updated_at=position.updated_at,
    )


def _summary(position: Position) -> PositionSummary:
    last_price = position.last_price or Decimal(0)
    with localcontext(MONEY_CONTEXT):
        market_value = fit(position.quantity * last_price)
        unrealized = market_value - position.cost_basis
    return PositionSummary(
        **_position(position).model_dump(),
        quote_currency=quote_currency(position.symbol),
        market_value=market_value,
        unrealized_pnl=unrealized,
    )
