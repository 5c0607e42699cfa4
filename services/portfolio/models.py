"""Tables of the portfolio database."""

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    types,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime, also on SQLite (which stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


# Money and quantities: NUMERIC(38, 18), i.e. 20 integer and 18 decimal digits.
MONEY_PRECISION = 38
MONEY_SCALE = 18
MONEY_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)
MONEY_LIMIT = Decimal(10) ** (MONEY_PRECISION - MONEY_SCALE)
# Wide enough for any product of two stored values; results are rounded to the column scale.
MONEY_CONTEXT = Context(
    prec=4 * MONEY_PRECISION,
    rounding=ROUND_HALF_EVEN,
    traps=[InvalidOperation, DivisionByZero, Overflow],
)
# sign, 20 digits, point, 18 digits
_MONEY_TEXT_LENGTH = MONEY_PRECISION + 2


class Money(types.TypeDecorator[Decimal]):
    """An exact decimal of 18 places: NUMERIC(38, 18), or fixed-point text on SQLite.

    SQLite has no decimal type; its NUMERIC affinity would keep a float, so the value is
    stored as text there and never passes through a float on either database.
    """

    impl = Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(_MONEY_TEXT_LENGTH))
        return dialect.type_descriptor(Numeric(MONEY_PRECISION, MONEY_SCALE, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError("money columns take finite Decimal values only")
        fixed = value.quantize(MONEY_QUANTUM, context=MONEY_CONTEXT)
        # Rounding is the domain's decision, made before it gets here; never round silently.
        if value.copy_abs() >= MONEY_LIMIT or fixed != value:
            raise ValueError(f"{value} does not fit NUMERIC({MONEY_PRECISION}, {MONEY_SCALE})")
        return format(fixed, "f") if dialect.name == "sqlite" else fixed

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(value if isinstance(value, str | int) else str(value))


class Base(DeclarativeBase):
    """Declarative base of every table of the service."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UserAccount(Base):
    """A user of the system, with hashed credentials only."""

    __tablename__ = "user_accounts"
    __table_args__ = (
        Index("ix_user_accounts_username", "username", unique=True),
        # API keys are looked up by hash: one unique index, never a scan.
        Index("ix_user_accounts_api_key_hash", "api_key_hash", unique=True),
        # The change feed reads by this column: a range scan, never the whole table.
        Index("ix_user_accounts_access_changed_at", "access_changed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON)
    is_active: Mapped[bool]
    must_change_password: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    api_key_hash: Mapped[str | None] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(16))
    api_key_last_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped with every change that must end live access (deactivation, roles, rotations);
    # never by a login. The gateway polls it through the change feed.
    access_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"UserAccount(username={self.username!r})"


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
