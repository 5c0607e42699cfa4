"""The portfolio page: totals, positions, charts, the trade form and the trade history.

Everything comes from the portfolio REST API through the gateway, which decides who may
see it: a user without the portfolio role gets the gateway's 403 as the page.
"""

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import Response

from services.frontend.deps import FormSession, GatewayDep, PageSession, StoreDep
from services.frontend.errors import GatewayError
from services.frontend.gateway import Gateway, Reply
from services.frontend.numbers import amount, quantity
from services.frontend.pages import redirect, render
from services.frontend.portfolio import (
    SIDES,
    TradeForm,
    form_errors,
    holdings,
    realised_charts,
)
from services.frontend.routes.services import refresh_identity
from services.frontend.sessions import Session
from shared.roles import Service

router = APIRouter(prefix=f"/services/{Service.PORTFOLIO.value}")

PAGE_URL = f"/services/{Service.PORTFOLIO.value}"
HISTORY_PAGE_SIZE = 20
# The realised P&L chart reads the newest trades in pages the API's limit allows.
CHART_PAGE_SIZE = 500
CHART_MAX_PAGES = 4
# Answers a form shows next to its fields; anything else is the error page.
FORM_ERROR_STATUSES = {400, 409, 422}

FormText = Annotated[str, Form(max_length=200)]


def new_idempotency_key() -> str:
    """Return a key for one rendering of the trade form: its double submit books once."""
    return f"web-{secrets.token_urlsafe(18)}"


def gateway_error(reply: Reply) -> GatewayError:
    """Turn an error answer into the error the page shows."""
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    code = str(error.get("code", "upstream_error")) if isinstance(error, dict) else "upstream_error"
    return GatewayError(reply.status, code, reply.error_message)


async def chart_trades(gateway: Gateway, token: str) -> tuple[list[dict[str, Any]], bool]:
    """Return the newest trades the chart draws, and whether older ones were left out."""
    trades: list[dict[str, Any]] = []
    params = {"limit": str(CHART_PAGE_SIZE)}
    for _ in range(CHART_MAX_PAGES):
        reply = await gateway.service(token, Service.PORTFOLIO, "trades", params=params)
        if not reply.ok or not isinstance(reply.body, dict):
            raise gateway_error(reply)
        trades.extend(t for t in reply.body.get("trades", []) if isinstance(t, dict))
        cursor = reply.body.get("next_cursor")
        if not cursor:
            return trades, False
        params = {**params, "cursor": str(cursor)}
    return trades, True


async def show(
    request: Request,
    gateway: Gateway,
    session: Session,
    *,
    symbol: str | None = None,
    cursor: str | None = None,
    form: TradeForm | None = None,
    status_code: int = 200,
) -> Response:
    """Render the page from the API's summary, one page of trades and the chart's trades."""
    token = session.bearer()
    summary = await gateway.service(token, Service.PORTFOLIO, "summary")
    if not summary.ok:
        raise gateway_error(summary)
    params = {"limit": str(HISTORY_PAGE_SIZE)}
    if symbol:
        params["symbol"] = symbol
    if cursor:
        params["cursor"] = cursor
    history = await gateway.service(token, Service.PORTFOLIO, "trades", params=params)
    trades, truncated = await chart_trades(gateway, token)
    return await render(
        request,
        "portfolio.html",
        session=session,
        status_code=status_code,
        holdings=holdings(summary.body),
        realised=realised_charts(trades),
        chart_truncated=truncated,
        history=history.body if history.ok and isinstance(history.body, dict) else {},
        history_error=None if history.ok else history.error_message,
        symbol=symbol or "",
        cursor=cursor or "",
        form=form or TradeForm(new_idempotency_key()),
        sides=SIDES,
    )


@router.get("")
async def portfolio_page(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    session: PageSession,
    symbol: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Show the caller's portfolio; `symbol` filters and `cursor` pages the trade history."""
    await refresh_identity(store, gateway, session)
    return await show(request, gateway, session, symbol=symbol, cursor=cursor)


@router.post("/trades")
async def book_trade(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    session: FormSession,
    symbol: FormText = "",
    side: FormText = "",
    quantity_text: Annotated[str, Form(alias="quantity", max_length=200)] = "",
    price: FormText = "",
    idempotency_key: FormText = "",
) -> Response:
    """Book a trade with the form's Idempotency-Key, then show the refreshed page."""
    values = {
        "symbol": symbol.strip(),
        "side": side.strip(),
        "quantity": quantity_text.strip(),
        "price": price.strip(),
    }
    if not idempotency_key:
        form = TradeForm(
            new_idempotency_key(),
            values,
            "this form is out of date; check the values and submit it again",
        )
        return await show(request, gateway, session, form=form, status_code=400)
    reply = await gateway.service(
        session.bearer(),
        Service.PORTFOLIO,
        "trades",
        "POST",
        json=values,
        headers={"Idempotency-Key": idempotency_key},
    )
    if reply.status in FORM_ERROR_STATUSES:
        message, errors = form_errors(reply.body)
        # A fresh key: the next submit is a new attempt, not a replay of this one.
        form = TradeForm(new_idempotency_key(), values, message, errors)
        return await show(request, gateway, session, form=form, status_code=reply.status)
    if not reply.ok or not isinstance(reply.body, dict):
        raise gateway_error(reply)
    session.flash = booked_message(reply.body)
    await store.save(session)
    return redirect(PAGE_URL)


def booked_message(receipt: dict[str, Any]) -> str:
    """Say what was booked, or that a repeated submit booked nothing more."""
    trade = receipt.get("trade")
    if not isinstance(trade, dict):
        trade = {}
    verb = "Bought" if trade.get("side") == "buy" else "Sold"
    currency = str(trade.get("symbol", "")).rpartition("-")[2]
    what = (
        f"{verb} {quantity(trade.get('quantity'))} {trade.get('symbol', '')} "
        f"at {amount(trade.get('price'))} {currency}"
    )
    if receipt.get("replayed"):
        return f"This form was already submitted: {what} once, not again."
    return f"{what}."
