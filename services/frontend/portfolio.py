"""The portfolio page's view of the API's answers: holdings, chart series and form errors.

Only reading and arranging what the gateway answered; amounts stay exact decimals until a
template formats them.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from services.frontend.charts import Point, Slice, allocation, realised_over_time
from services.frontend.numbers import ratio_percent, to_decimal

TRADE_FIELDS = ("symbol", "side", "quantity", "price")
SIDES = ("buy", "sell")


@dataclass(frozen=True, slots=True)
class Holdings:
    """Totals per quote currency, open positions, and the allocation chart per currency."""

    totals: list[dict[str, Any]]
    positions: list[dict[str, Any]]
    symbols: list[str]
    allocation: dict[str, Markup]


@dataclass(slots=True)
class TradeForm:
    """What the trade form shows: the values typed, and the API's complaints per field."""

    idempotency_key: str
    values: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def holdings(summary: Any) -> Holdings:
    """Arrange `GET /api/portfolio/summary` for the page."""
    body = summary if isinstance(summary, dict) else {}
    listed = [p for p in body.get("positions", []) if isinstance(p, dict)]
    totals = [t for t in body.get("totals", []) if isinstance(t, dict)]
    open_positions = []
    for position in listed:
        held = to_decimal(position.get("quantity"))
        if held is None or held.is_zero():
            continue
        pnl_percent = ratio_percent(position.get("unrealized_pnl"), position.get("cost_basis"))
        open_positions.append({**position, "pnl_percent": pnl_percent})
    charts: dict[str, Markup] = {}
    for currency in sorted({str(p.get("quote_currency", "")) for p in open_positions}):
        slices = [
            Slice(str(p.get("symbol", "")), value)
            for p in open_positions
            if p.get("quote_currency") == currency
            and (value := to_decimal(p.get("market_value"))) is not None
        ]
        charts[currency] = allocation(currency, slices)
    return Holdings(
        totals=totals,
        positions=open_positions,
        symbols=sorted({str(p.get("symbol")) for p in listed if p.get("symbol")}),
        allocation=charts,
    )


def realised_charts(trades: Iterable[Mapping[str, Any]]) -> dict[str, Markup]:
    """Draw cumulative realised P&L per quote currency from the trades that realised some."""
    series: dict[str, list[tuple[datetime, int, Decimal]]] = {}
    for trade in trades:
        realised = to_decimal(trade.get("realized_pnl"))
        at = _moment(trade.get("executed_at"))
        symbol = str(trade.get("symbol", ""))
        if realised is None or at is None or "-" not in symbol:
            continue
        ident = trade.get("id")
        series.setdefault(symbol.rpartition("-")[2], []).append(
            (at, ident if isinstance(ident, int) else 0, realised)
        )
    charts: dict[str, Markup] = {}
    for currency in sorted(series):
        running = Decimal(0)
        points: list[Point] = []
        # Oldest first; trades booked in the same instant in the order they were booked.
        for at, _, realised in sorted(series[currency], key=lambda item: (item[0], item[1])):
            running += realised
            points.append(Point(at, running))
        charts[currency] = realised_over_time(currency, points)
    return charts


def form_errors(body: Any) -> tuple[str, dict[str, str]]:
    """Split the API's error into its message and a message per trade field it names."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "the trade was not booked", {}
    message = str(error.get("message") or "the trade was not booked")
    named = [str(f) for f in error.get("fields", []) if str(f) in TRADE_FIELDS]
    # The API says "invalid request: quantity: ...; price: ..." or "quantity: ...".
    problems = message.removeprefix("invalid request: ").split("; ")
    per_field: dict[str, str] = {}
    for name in named:
        said = next((p for p in problems if p.startswith(f"{name}: ")), None)
        per_field[name] = said.removeprefix(f"{name}: ") if said else "check this value"
    return message, per_field
