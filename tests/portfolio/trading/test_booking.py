"""Average-cost accounting without a database: buys, sells, exact decimals, refusals."""

from decimal import Decimal

import pytest

from services.portfolio.errors import InsufficientPositionError, InvalidTradeError
from services.portfolio.trading.booking import Book, apply_trade
from services.portfolio.trading.schemas import Side

D = Decimal
EMPTY = Book(quantity=D(0), cost_basis=D(0), realized_pnl=D(0))


def trade(book: Book, side: str, quantity: str, price: str) -> tuple[Book, Decimal | None]:
    return apply_trade(
        book, symbol="BTC-USD", side=Side(side), quantity=D(quantity), price=D(price)
    )


def test_buys_add_quantity_and_cost_and_realise_nothing():
    after, realized = trade(EMPTY, "buy", "1", "100")
    after, realized = trade(after, "buy", "2", "130")
    assert realized is None
    assert after == Book(quantity=D(3), cost_basis=D(360), realized_pnl=D(0))
    assert after.average_cost == D(120)


def test_a_sell_realises_price_minus_average_cost_times_quantity():
    held = Book(quantity=D(3), cost_basis=D(360), realized_pnl=D(0))
    after, realized = trade(held, "sell", "1.5", "150")
    assert realized == D(45)  # (150 - 120) * 1.5
    assert after == Book(quantity=D("1.5"), cost_basis=D(180), realized_pnl=D(45))
    assert after.average_cost == D(120)  # a sell never moves the average cost


def test_a_sell_below_the_average_cost_realises_a_loss():
    held = Book(quantity=D(2), cost_basis=D(200), realized_pnl=D(5))
    after, realized = trade(held, "sell", "0.5", "80")
    assert realized == D(-10)
    assert after.realized_pnl == D(-5)


def test_amounts_stay_exact_where_floats_would_drift():
    book = EMPTY
    for _ in range(3):
        book, _ = trade(book, "buy", "0.1", "0.1")
    assert book.quantity == D("0.3")
    assert book.cost_basis == D("0.03")


def test_a_repeating_average_cost_is_rounded_to_18_places_and_closing_leaves_no_cost():
    book, _ = trade(EMPTY, "buy", "1", "100")
    book, _ = trade(book, "buy", "2", "101")
    assert book.average_cost == D("100.666666666666666667")
    book, realized = trade(book, "sell", "1", "110")
    assert realized == D("9.333333333333333333")
    book, realized = trade(book, "sell", "2", "110")
    assert book.quantity == 0
    assert book.cost_basis == 0
    assert book.average_cost is None
    # Closing the position realises exactly what it earned in total.
    assert book.realized_pnl == D(330) - D(302)


def test_a_sell_larger_than_the_position_is_refused():
    held = Book(quantity=D("1.5"), cost_basis=D(150), realized_pnl=D(0))
    with pytest.raises(InsufficientPositionError) as caught:
        trade(held, "sell", "2", "100")
    assert caught.value.field == "quantity"
    assert "holds 1.5" in str(caught.value)
    assert "short selling is not supported" in str(caught.value)


def test_a_sell_of_nothing_held_is_refused():
    with pytest.raises(InsufficientPositionError):
        trade(EMPTY, "sell", "0.000000000000000001", "1")


def test_a_position_beyond_numeric_38_18_is_refused():
    big = Book(quantity=D(10) ** 15, cost_basis=D(10) ** 19, realized_pnl=D(0))
    with pytest.raises(InvalidTradeError, match="too large"):
        trade(big, "buy", str(D(10) ** 15), str(D(10) ** 15))
