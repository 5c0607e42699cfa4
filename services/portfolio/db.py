"""The portfolio database: the handle (engine and sessions) both domains share, the column
types they store with, and the declarative base of their tables."""

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, InvalidOperation, Overflow
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, Dialect, MetaData, Numeric, String, event, text, types
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from services.portfolio import metrics, migrations
from services.portfolio.config import DEFAULT_DATABASE_URL, PortfolioSettings
from services.portfolio.errors import ConfigurationError, DatabaseUnavailableError
from shared.tracing import instrument_engine

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
        if url.database and url.database != ":memory:" and not url.database.startswith("file:"):
            _make_private(url.database)
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


SQLITE_FILE_MODE = 0o600


def _make_private(path: str) -> None:
    """Create the SQLite file owner-only (it holds password and API-key hashes), and take
    group and world access from one that exists; SQLite gives its -wal and -shm files the
    database file's mode, so they follow."""
    database = Path(path)
    if not database.parent.is_dir():
        return  # SQLite will name the missing directory when it connects
    # O_CREAT without O_TRUNC: an existing file is opened, never emptied; the mode (minus
    # the umask) applies only to a new one.
    os.close(os.open(database, os.O_CREAT | os.O_WRONLY, SQLITE_FILE_MODE))
    for file in (database, Path(f"{path}-wal"), Path(f"{path}-shm")):
        with contextlib.suppress(FileNotFoundError, PermissionError):
            if file.stat().st_mode & 0o077:
                file.chmod(SQLITE_FILE_MODE)


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
        metrics.watch_pool(engine)
        instrument_engine(engine)
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


# Tables and column types.

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
