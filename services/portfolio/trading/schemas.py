"""What the positions and trades API accepts and answers."""

import hashlib
import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator
from pydantic_core import PydanticCustomError

from services.portfolio.db import MONEY_SCALE

# Trading pairs: BASE-QUOTE or BASE/QUOTE, 1-20 letters or digits each side, any case;
# stored and answered as upper-case BASE-QUOTE so "btc/usd" and "BTC-USD" are one position.
SYMBOL_PATTERN = re.compile(r"([A-Z0-9]{1,20})[-/]([A-Z0-9]{1,20})")
SYMBOL_RULE = "a trading pair such as BTC-USD or ETH/USDT (1-20 letters or digits each side)"
# The largest quantity or price one trade may carry (what a position may reach is
# bounded by the NUMERIC(38, 18) columns, checked when the trade is booked).
MAX_AMOUNT = Decimal(10) ** 15


def canonical_symbol(raw: str) -> str:
    """Return a symbol as stored (upper-case BASE-QUOTE), or raise `ValueError`."""
    match = SYMBOL_PATTERN.fullmatch(raw.strip().upper())
    if match is None or match[1] == match[2]:
        raise ValueError(f"must be {SYMBOL_RULE}")
    return f"{match[1]}-{match[2]}"


def quote_currency(symbol: str) -> str:
    """Return the currency a canonical symbol is priced in."""
    return symbol.rpartition("-")[2]


def decimal_text(value: Decimal) -> str:
    """Write a decimal in plain notation without trailing zeros (JSON strings keep precision)."""
    if value.is_zero():
        return "0"
    return format(value.normalize(), "f")


# Exact in, exact out: decimals travel as JSON strings.
DecimalText = Annotated[Decimal, PlainSerializer(decimal_text, return_type=str, when_used="json")]
# Python's Decimal also reads other scripts' digits ("١٢٣"), underscores ("1_000"),
# exponents and surrounding blanks; an amount string is plain ASCII decimal notation only.
PLAIN_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
AMOUNT_RULE = 'a decimal string of ASCII digits with an optional fraction, such as "12.5"'


def _plain_decimal(value: object) -> object:
    if isinstance(value, str) and not PLAIN_DECIMAL.fullmatch(value):
        raise PydanticCustomError("decimal_format", f"must be {AMOUNT_RULE}")
    return value


def _amount_schema(schema: dict[str, Any]) -> None:
    for choice in schema.get("anyOf", ()):
        if choice.get("type") == "string":
            choice["pattern"] = f"^{PLAIN_DECIMAL.pattern}$"


Amount = Annotated[
    Decimal,
    Field(gt=0, le=MAX_AMOUNT, decimal_places=MONEY_SCALE, json_schema_extra=_amount_schema),
    BeforeValidator(_plain_decimal),
]


class Side(StrEnum):
    """Which way a trade goes."""

    BUY = "buy"
    SELL = "sell"


class TradeIn(BaseModel):
    """Body of `POST /trades`: amounts as decimal strings (or JSON numbers, read exactly)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: Annotated[str, Field(max_length=64, description=SYMBOL_RULE)]
    side: Side
    quantity: Amount
    price: Amount

    @field_validator("symbol")
    @classmethod
    def _symbol(cls, value: str) -> str:
        try:
            return canonical_symbol(value)
        except ValueError as exc:
            raise PydanticCustomError("symbol_pattern", str(exc)) from None

    @field_validator("side", mode="before")
    @classmethod
    def _side(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    def fingerprint(self) -> str:
        """Hash what the trade says, so a retry can be told from a different trade."""
        text = "|".join(
            (self.symbol, self.side.value, decimal_text(self.quantity), decimal_text(self.price))
        )
        return hashlib.sha256(text.encode()).hexdigest()


class TradeOut(BaseModel):
    """A booked trade."""

    id: int
    symbol: str
    side: Side
    quantity: DecimalText
    price: DecimalText
    value: DecimalText
    # Sells only: (price - average cost) * quantity.
    realized_pnl: DecimalText | None
    executed_at: datetime
    idempotency_key: str | None


class PositionOut(BaseModel):
    """What the caller holds of one symbol, at average cost."""

    symbol: str
    quantity: DecimalText
    # Null once the position is closed (quantity 0).
    average_cost: DecimalText | None
    cost_basis: DecimalText
    realized_pnl: DecimalText
    last_price: DecimalText | None
    trade_count: int
    updated_at: datetime


class TradeReceipt(BaseModel):
    """Answer of `POST /trades`: the trade, the position as it stands now, and whether the
    request replayed an earlier one with the same Idempotency-Key."""

    trade: TradeOut
    position: PositionOut
    replayed: bool


class TradePage(BaseModel):
    """`{"trades": [...], "next_cursor": ...}`; pass `next_cursor` back as `cursor`."""

    trades: list[TradeOut]
    next_cursor: str | None


class PositionsOut(BaseModel):
    """`{"positions": [...]}`."""

    positions: list[PositionOut]


class PositionBody(BaseModel):
    """`{"position": ...}`."""

    position: PositionOut


class PositionSummary(PositionOut):
    """A position in the summary, valued at the last price it traded at."""

    quote_currency: str
    market_value: DecimalText
    unrealized_pnl: DecimalText


class CurrencyTotals(BaseModel):
    """Totals of the positions priced in one quote currency."""

    quote_currency: str
    cost_basis: DecimalText
    market_value: DecimalText
    unrealized_pnl: DecimalText
    realized_pnl: DecimalText


class SummaryOut(BaseModel):
    """`GET /summary`: every position ever traded (closed ones keep their realised P&L)
    and totals per quote currency (amounts in different currencies are never added)."""

    positions: list[PositionSummary]
    totals: list[CurrencyTotals]
