"""The JSON access log, written from a background thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sys
from logging.handlers import QueueListener, WatchedFileHandler
from typing import Any

from shared.clock import epoch_seconds
from shared.logs import utc_time

LOGGER_NAME = "lct.gateway.access"

# The fields of every line, in order. None of them can hold a token, key or password:
# the path is logged without its query string, and API keys appear only as their id.
# The first ones are every service's (shared/logs.py); `upstream` is the service proxied to.
FIELDS = (
    "time",
    "level",
    "service",
    "request_id",
    "trace_id",
    "method",
    "route",
    "path",
    "status",
    "duration_ms",
    "user",
    "auth_method",
    "key_id",
    "upstream",
    "client",
)

# Entries travel to the writer thread in batches: one thread wake-up and one write per
# batch instead of per request. A batch leaves when it is full or this many seconds old.
BATCH_SIZE = 256
BATCH_SECONDS = 0.05


def _line(entry: dict[str, Any]) -> str:
    entry["time"] = utc_time(entry["time"])
    entry["level"] = "error" if (entry.get("status") or 0) >= 500 else "info"
    entry["service"] = "gateway"
    return json.dumps({name: entry.get(name) for name in FIELDS}, separators=(",", ":"))


class _JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entries: list[dict[str, Any]] = record.msg if isinstance(record.msg, list) else []
        return "\n".join(_line(entry) for entry in entries)


class _Listener(QueueListener):
    def prepare(self, record: Any) -> logging.LogRecord:
        # Runs in the writer thread: the loop only queued a list of plain dicts.
        return logging.LogRecord(LOGGER_NAME, logging.INFO, "", 0, record, None, None)


class AccessLog:
    """One JSON line per request to stdout, stderr or a file."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._queue: queue.SimpleQueue[list[dict[str, Any]]] = queue.SimpleQueue()
        self._listener: QueueListener | None = None
        self._pending: list[dict[str, Any]] = []
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Open the target and start the writer thread."""
        sink: logging.Handler
        if self.target == "stdout":
            sink = logging.StreamHandler(sys.stdout)
        elif self.target == "stderr":
            sink = logging.StreamHandler(sys.stderr)
        else:
            sink = WatchedFileHandler(self.target, encoding="utf-8")
        sink.setFormatter(_JsonLinesFormatter())
        self._listener = _Listener(self._queue, sink)
        self._listener.start()

    def stop(self) -> None:
        """Write what is pending and close the target."""
        self.flush()
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one line; never blocks (JSON and the write happen in the writer thread)."""
        entry["time"] = epoch_seconds()
        self._pending.append(entry)
        if len(self._pending) >= BATCH_SIZE:
            self.flush()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(BATCH_SECONDS, self.flush)

    def flush(self) -> None:
        """Hand the pending entries to the writer thread."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            batch, self._pending = self._pending, []
            self._queue.put_nowait(batch)
