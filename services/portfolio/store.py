"""The portfolio database: the engine, and one small function per query."""

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from services.portfolio import migrations
from services.portfolio.config import DEFAULT_DATABASE_URL, PortfolioSettings
from services.portfolio.errors import ConfigurationError, DatabaseUnavailableError
from services.portfolio.models import Position, Trade, UserAccount

T = TypeVar("T")

_AIOSQLITE_LOGGER = logging.getLogger("aiosqlite")

SQLITE_BUSY_TIMEOUT_MS = 10_000
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


def describe_database(url: URL) -> str:
    """Name a database for messages: path, or host and database name, never a password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"PostgreSQL database {url.database!r} at {host}{port}"


def _parse_url(raw: str) -> URL:
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigurationError(
            "PORTFOLIO_DATABASE_URL is not a database URL; expected sqlite+aiosqlite:///<path> "
            "or postgresql+asyncpg://user@host/db"
        ) from None
    if url.drivername not in SUPPORTED_DRIVERS:
        raise ConfigurationError(
            f"PORTFOLIO_DATABASE_URL uses driver {url.drivername!r}; supported: "
            + ", ".join(SUPPORTED_DRIVERS)
        )
    return url


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def _enable_wal(engine: AsyncEngine) -> None:
    """Switch a SQLite file to WAL (it stays so), waiting out a concurrent switch."""
    # Two processes opening a new file at once both try the switch; SQLite answers the
    # loser "database is locked" at once, without honouring the busy timeout, so retry.
    deadline = asyncio.get_running_loop().time() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            async with engine.connect() as conn:
                # An in-memory database answers "memory": nothing to switch there.
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            return
        except OperationalError as exc:
            if "locked" not in str(exc.orig) or asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(0.05)


def create_engine(settings: PortfolioSettings) -> AsyncEngine:
    """Build the engine for the configured database (no connection is made yet)."""
    raw_url = settings.database_url.get_secret_value()
    url = _parse_url(raw_url)
    if url.get_backend_name() == "sqlite":
        if raw_url == DEFAULT_DATABASE_URL and url.database:
            # The embedded default lives under the repository's git-ignored var/.
            _ensure_directory(url.database)
        # aiosqlite logs every statement with its parameters (password hashes) at DEBUG.
        _AIOSQLITE_LOGGER.setLevel(max(_AIOSQLITE_LOGGER.level, logging.INFO))
        engine = create_async_engine(
            url,
            hide_parameters=True,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        )
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    return create_async_engine(
        url,
        hide_parameters=True,  # never a hash or key in an error message or log line
        pool_pre_ping=True,
        connect_args={"timeout": settings.database_connect_timeout},
    )


def _ensure_directory(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class Database:
    """The engine and session factory of one database."""

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    description: str

    @classmethod
    async def open(cls, settings: PortfolioSettings, *, migrate: bool = True) -> "Database":
        """Connect, apply pending migrations, or raise `DatabaseUnavailableError`."""
        engine = create_engine(settings)
        database = cls(
            engine=engine,
            sessions=async_sessionmaker(engine, expire_on_commit=False),
            description=describe_database(engine.url),
        )
        try:
            await database.ping()
            if engine.dialect.name == "sqlite":
                await database.guard(_enable_wal(engine))
            if migrate:
                await database.guard(migrations.upgrade(engine))
        except BaseException:
            await engine.dispose()
            raise
        return database

    async def ping(self) -> None:
        """Run a trivial query, or raise `DatabaseUnavailableError`."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (DBAPIError, OSError, TimeoutError) as exc:
            # Any failure here (refused, unknown database, bad login) means unusable.
            raise self.unavailable(exc) from None

    async def guard(self, work: Awaitable[T]) -> T:
        """Await `work`, turning a connection failure into `DatabaseUnavailableError`."""
        try:
            return await work
        except Exception as exc:
            if is_connection_error(exc):
                raise self.unavailable(exc) from None
            raise

    async def diagnose(self, exc: BaseException) -> DatabaseUnavailableError | None:
        """Tell whether a failed query failed because the database is gone."""
        if is_connection_error(exc):
            return self.unavailable(exc)
        if isinstance(exc, DBAPIError):
            # Some drivers report a lost database (dropped, login refused) as a plain
            # DBAPIError; a fresh ping tells that apart from a bad statement.
            try:
                await self.ping()
            except DatabaseUnavailableError as unavailable:
                return unavailable
        return None

    def unavailable(self, exc: BaseException) -> DatabaseUnavailableError:
        """Describe a connection failure without the URL's password."""
        return DatabaseUnavailableError(f"cannot reach the {self.description} ({_reason(exc)})")

    async def close(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


def is_connection_error(exc: BaseException) -> bool:
    """Tell whether an exception means the database could not be reached or used."""
    return isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError)


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    detail = str(original).splitlines()[0] if str(original) else ""
    name = type(original).__name__
    if not detail:
        return name
    return detail if name == "Error" else f"{name}: {detail}"


async def get_user(session: AsyncSession, username: str) -> UserAccount | None:
    """Return the account named `username`."""
    result = await session.scalars(select(UserAccount).where(UserAccount.username == username))
    return result.one_or_none()


async def get_user_by_api_key_hash(session: AsyncSession, key_hash: str) -> UserAccount | None:
    """Return the account holding the API key with this hash (one indexed lookup)."""
    result = await session.scalars(select(UserAccount).where(UserAccount.api_key_hash == key_hash))
    return result.one_or_none()


async def list_users(session: AsyncSession) -> Sequence[UserAccount]:
    """Return every account, by username."""
    result = await session.scalars(select(UserAccount).order_by(UserAccount.username))
    return result.all()


async def list_access_changes(
    session: AsyncSession, *, since: datetime, limit: int
) -> Sequence[UserAccount]:
    """Return up to `limit` accounts whose access changed at or after `since`, oldest first."""
    result = await session.scalars(
        select(UserAccount)
        .where(UserAccount.access_changed_at >= since)
        .order_by(UserAccount.access_changed_at, UserAccount.username)
        .limit(limit)
    )
    return result.all()


async def add_user(session: AsyncSession, account: UserAccount) -> UserAccount:
    """Insert an account; a duplicate username raises `IntegrityError` at flush."""
    session.add(account)
    await session.flush()
    return account


async def update_user(
    session: AsyncSession,
    username: str,
    *,
    expect: Mapping[str, Any] | None = None,
    **values: Any,
) -> UserAccount | None:
    """Set columns of one account and return it as stored, or None if there is none (or,
    with `expect`, if any of those columns no longer holds the value given)."""
    conditions = [getattr(UserAccount, column) == value for column, value in (expect or {}).items()]
    result = await session.scalars(
        update(UserAccount)
        .where(UserAccount.username == username, *conditions)
        .values(**values)
        .returning(UserAccount)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return result.one_or_none()


async def refund_login_attempt(session: AsyncSession, username: str) -> None:
    """Give back one attempt counted by `reserve_login_attempt` (never below zero)."""
    await session.execute(
        update(UserAccount)
        .where(UserAccount.username == username, UserAccount.failed_login_count > 0)
        .values(failed_login_count=UserAccount.failed_login_count - 1)
        .execution_options(synchronize_session=False)
    )


async def reserve_login_attempt(
    session: AsyncSession, username: str, now: datetime
) -> UserAccount | None:
    """Count one login attempt against an account that is not refused at `now`, in one
    conditional UPDATE, and return the account as counted; None if it is refused or absent.

    The row stays locked until the transaction ends (PostgreSQL's row lock, SQLite's write
    lock), so a concurrent attempt waits and then sees this one's count.
    """
    result = await session.scalars(
        update(UserAccount)
        .where(
            UserAccount.username == username,
            or_(UserAccount.throttled_until.is_(None), UserAccount.throttled_until <= now),
        )
        .values(failed_login_count=UserAccount.failed_login_count + 1)
        .returning(UserAccount)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return result.one_or_none()


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
