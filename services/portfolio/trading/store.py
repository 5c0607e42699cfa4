"""Queries of positions and trades: one small function each."""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.trading.models import Position, Trade


async def lock_for_writing(session: AsyncSession) -> None:
    """Start the transaction holding SQLite's write lock; PostgreSQL locks rows instead.

    A deferred SQLite transaction that reads and then writes fails with "database is
    locked" when another one wrote meanwhile; BEGIN IMMEDIATE makes writers queue (up to
    the busy timeout) instead.
    """
    connection = await session.connection()
    if connection.dialect.name == "sqlite":
        await connection.exec_driver_sql("BEGIN IMMEDIATE")


async def lock_position(
    session: AsyncSession, *, username: str, symbol: str, now: datetime
) -> Position:
    """Return the user's position in `symbol`, created empty if new, locked until commit."""
    connection = await session.connection()
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    zero = Decimal(0)
    await session.execute(
        dialect_insert(Position)
        .values(
            username=username,
            symbol=symbol,
            quantity=zero,
            cost_basis=zero,
            realized_pnl=zero,
            last_price=None,
            trade_count=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["username", "symbol"])
    )
    result = await session.scalars(
        select(Position)
        .where(Position.username == username, Position.symbol == symbol)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return result.one()


async def get_position(session: AsyncSession, *, username: str, symbol: str) -> Position | None:
    """Return the user's position in `symbol`."""
    result = await session.scalars(
        select(Position).where(Position.username == username, Position.symbol == symbol)
    )
    return result.one_or_none()


async def list_positions(
    session: AsyncSession, *, username: str, open_only: bool
) -> Sequence[Position]:
    """Return the user's positions by symbol; only those holding a quantity if `open_only`."""
    query = select(Position).where(Position.username == username)
    if open_only:
        query = query.where(Position.quantity != Decimal(0))
    result = await session.scalars(query.order_by(Position.symbol))
    return result.all()


async def add_trade(session: AsyncSession, trade: Trade) -> Trade:
    """Insert a trade; a reused idempotency key raises `IntegrityError` at flush."""
    session.add(trade)
    await session.flush()
    return trade


async def get_trade_by_key(
    session: AsyncSession, *, username: str, idempotency_key: str
) -> Trade | None:
    """Return the user's trade booked under an idempotency key."""
    result = await session.scalars(
        select(Trade).where(Trade.username == username, Trade.idempotency_key == idempotency_key)
    )
    return result.one_or_none()


async def list_trades(
    session: AsyncSession,
    *,
    username: str,
    limit: int,
    before_id: int | None = None,
    symbol: str | None = None,
) -> Sequence[Trade]:
    """Return up to `limit` of the user's trades, newest (highest id) first."""
    query = select(Trade).where(Trade.username == username)
    if symbol is not None:
        query = query.where(Trade.symbol == symbol)
    if before_id is not None:
        query = query.where(Trade.id < before_id)
    result = await session.scalars(query.order_by(Trade.id.desc()).limit(limit))
    return result.all()
