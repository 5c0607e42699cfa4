"""The portfolio's own Prometheus metrics (the request metrics are shared.metrics').

Every label value comes from a closed set (an outcome code, a side, a pool state): never
a username, key or address.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, QueuePool

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


def read_pool(pool: Pool) -> None:
    """Set the pool gauges from what `pool` holds now: connections checked out, and those
    open (checked out or idle in the pool). Only a queue pool counts; others leave them."""
    if not isinstance(pool, QueuePool):
        return
    in_use = pool.checkedout()
    POOL_IN_USE.set(in_use)
    POOL_OPEN.set(in_use + pool.checkedin())


def watch_pool(engine: AsyncEngine) -> None:
    """Keep the pool gauges current as the engine's pool hands out and takes back connections.

    The gauges are read from the pool itself, never counted from its events: a count drifts
    (a checkin without its checkout, an engine of another test) and went negative. A pool
    event fires before the pool has finished the move (a connection is returned after its
    `checkin` event), so the read runs once the current step is over; a scrape reads the
    scraped app's own engine again (`Runtime.refresh_metrics`).
    """

    def read_now() -> None:
        # `dispose()` replaces the pool (its listeners go along): read the engine's current one.
        read_pool(engine.sync_engine.pool)

    def read_later(*_: Any) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # No loop in this thread (synchronous use): read now; a connection being
            # returned still counts until the next event or scrape.
            read_now()
            return
        loop.call_soon(read_now)

    for name in ("connect", "checkout", "checkin", "close", "close_detached", "invalidate"):
        event.listen(engine.sync_engine.pool, name, read_later)
