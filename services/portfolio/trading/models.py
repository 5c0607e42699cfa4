"""The tables of positions and trades."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.portfolio.db import Base, Money, UTCDateTime


class Position(Base):
    """What one user holds of one symbol, with its average-cost book."""

    __tablename__ = "positions"
    __table_args__ = (
        # One row per (user, symbol): the upsert's conflict target and the row lock.
        Index("ix_positions_username_symbol", "username", "symbol", unique=True),
        CheckConstraint("trade_count >= 0", name="trade_count_not_negative"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(41))
    quantity: Mapped[Decimal] = mapped_column(Money)
    # Sum of what the units held cost; the average cost is cost_basis / quantity.
    cost_basis: Mapped[Decimal] = mapped_column(Money)
    realized_pnl: Mapped[Decimal] = mapped_column(Money)
    last_price: Mapped[Decimal | None] = mapped_column(Money)
    trade_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"Position(username={self.username!r}, symbol={self.symbol!r})"


class Trade(Base):
    """One booked buy or sell; rows are never updated."""

    __tablename__ = "trades"
    __table_args__ = (
        # A retried request with the same key finds the first booking instead of a second one.
        Index("ix_trades_username_idempotency_key", "username", "idempotency_key", unique=True),
        # Newest-first pages per user, optionally per symbol.
        Index("ix_trades_username_id", "username", "id"),
        Index("ix_trades_username_symbol_id", "username", "symbol", "id"),
        CheckConstraint("side IN ('buy', 'sell')", name="side_is_buy_or_sell"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(41))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[Decimal] = mapped_column(Money)
    price: Mapped[Decimal] = mapped_column(Money)
    # Sells only: (price - average cost) * quantity.
    realized_pnl: Mapped[Decimal | None] = mapped_column(Money)
    executed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # sha256 of the normalised request, to tell a retry from a different trade under one key.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    def __repr__(self) -> str:
        return f"Trade(id={self.id!r}, username={self.username!r}, symbol={self.symbol!r})"
