"""Average-cost accounting: what a buy or a sell does to a position, in exact decimals."""

from dataclasses import dataclass
from decimal import Decimal, localcontext

from services.portfolio.db import MONEY_CONTEXT, MONEY_LIMIT, MONEY_QUANTUM
from services.portfolio.errors import InsufficientPositionError, InvalidTradeError
from services.portfolio.trading.schemas import Side, decimal_text


def fit(value: Decimal, field: str = "quantity") -> Decimal:
    """Round to the stored 18 places (half to even), or refuse what the columns cannot hold."""
    rounded = value.quantize(MONEY_QUANTUM, context=MONEY_CONTEXT)
    if rounded.copy_abs() >= MONEY_LIMIT:
        raise InvalidTradeError(
            field, "the resulting amount is too large to store (at most 20 integer digits)"
        )
    # Never a negative zero in the ledger.
    return rounded.copy_abs() if rounded.is_zero() else rounded


@dataclass(frozen=True, slots=True)
class Book:
    """A position's numbers: units held, what they cost in total, P&L realised so far."""

    quantity: Decimal
    cost_basis: Decimal
    realized_pnl: Decimal

    @property
    def average_cost(self) -> Decimal | None:
        """What one unit held cost on average; None when nothing is held."""
        if self.quantity.is_zero():
            return None
        with localcontext(MONEY_CONTEXT):
            return fit(self.cost_basis / self.quantity, "price")


def apply_trade(
    book: Book, *, symbol: str, side: Side, quantity: Decimal, price: Decimal
) -> tuple[Book, Decimal | None]:
    """Return the book after a trade and the P&L a sell realises (None for a buy).

    Average cost: a buy adds quantity * price to the cost basis; a sell realises
    (price - average cost) * quantity and takes the average cost of what it sold off the
    basis, so the average cost of what remains is unchanged. Short selling is refused.
    """
    with localcontext(MONEY_CONTEXT):
        fit(quantity * price)  # the trade's value must be storable too
        if side is Side.BUY:
            return (
                Book(
                    quantity=fit(book.quantity + quantity),
                    cost_basis=fit(book.cost_basis + quantity * price),
                    realized_pnl=book.realized_pnl,
                ),
                None,
            )
        if quantity > book.quantity:
            raise InsufficientPositionError(
                symbol, decimal_text(book.quantity), decimal_text(quantity)
            )
        if quantity == book.quantity:
            # Closing: exactly the whole basis goes, no rounding left behind.
            cost_sold = book.cost_basis
        else:
            cost_sold = fit(book.cost_basis * quantity / book.quantity)
        realized = fit((price - book.cost_basis / book.quantity) * quantity, "price")
        return (
            Book(
                quantity=fit(book.quantity - quantity),
                cost_basis=fit(book.cost_basis - cost_sold),
                realized_pnl=fit(book.realized_pnl + realized, "price"),
            ),
            realized,
        )
