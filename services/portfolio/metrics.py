"""The portfolio's own Prometheus metrics (the request metrics are shared.metrics').

Every label value comes from a closed set (an outcome code, a side, a pool state): never
a username, key or address.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

SUCCESS = "success"

PASSWORD_HASH_SECONDS = Histogram(
    "portfolio_password_hash_duration_seconds",
    "Time one password hash or check took on its worker thread (Argon2id by design).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
PASSWORD_HASHES_RUNNING = Gauge(
    "portfolio_password_hashes_running",
    "Password hashes running now (bounded by the hashing slots).",
    multiprocess_mode="livesum",
)
PASSWORD_HASHES_WAITING = Gauge(
    "portfolio_password_hashes_waiting",
    "Password checks waiting for a hashing slot.",
    multiprocess_mode="livesum",
)
PASSWORD_HASHES_REFUSED = Counter(
    "portfolio_password_hashes_refused",
    "Password checks refused because every hashing slot and queue place was taken.",
)
LOGINS = Counter(
    "portfolio_logins",
    "Password logins checked by the identity service, by outcome (success or the error code).",
    ("outcome",),
)
TRADES_BOOKED = Counter(
    "portfolio_trades_booked",
    "Trades booked (a replayed idempotent request is not booked again), by side.",
    ("side",),
)
DB_POOL_CONNECTIONS = Gauge(
    "portfolio_db_pool_connections",
    "Database connections of the pool, by state (in_use, open).",
    ("state",),
    multiprocess_mode="livesum",
)

LOGIN_SUCCESS = LOGINS.labels(SUCCESS)
POOL_IN_USE = DB_POOL_CONNECTIONS.labels("in_use")
POOL_OPEN = DB_POOL_CONNECTIONS.labels("open")


def login_outcome(code: str) -> None:
    """Count a refused login by its error code (a closed set)."""
    LOGINS.labels(code).inc()


def trade_booked(side: str) -> None:
    """Count one booked trade (`side`: buy or sell, already validated)."""
    TRADES_BOOKED.labels(side).inc()


def watch_pool(engine: AsyncEngine) -> None:
    """Follow the engine's pool: connections opened, closed, checked out and returned."""
    pool = engine.sync_engine.pool

    def connected(*_: Any) -> None:
        POOL_OPEN.inc()

    def closed(*_: Any) -> None:
        POOL_OPEN.dec()

    def checked_out(*_: Any) -> None:
        POOL_IN_USE.inc()

    def checked_in(*_: Any) -> None:
        POOL_IN_USE.dec()

    event.listen(pool, "connect", connected)
    event.listen(pool, "close", closed)
    event.listen(pool, "checkout", checked_out)
    event.listen(pool, "checkin", checked_in)
