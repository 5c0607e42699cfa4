"""The JSON access log, written from a background thread so the event loop never blocks."""

from __future__ import annotations

import json
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener, WatchedFileHandler
from typing import Any

LOGGER_NAME = "lct.gateway.access"

# The fields of every line, in order. None of them can hold a token, key or password:
# the path is logged without its query string, and API keys appear only as their id.
FIELDS = (
    "time",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "user",
    "auth_method",
    "key_id",
    "service",
    "client",
)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = dict(record.msg) if isinstance(record.msg, dict) else {}
        entry["time"] = (
            datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        ).replace("+00:00", "Z")
        return json.dumps({name: entry.get(name) for name in FIELDS}, separators=(",", ":"))


class _QueueHandler(QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # Formatting happens in the listener thread, not on the event loop.
        return record


class AccessLog:
    """One JSON line per request to stdout, stderr or a file."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._handler = _QueueHandler(self._queue)
        self._listener: QueueListener | None = None

    def start(self) -> None:
        """Open the target and start the writer thread."""
        sink: logging.Handler
        if self.target == "stdout":
            sink = logging.StreamHandler(sys.stdout)
        elif self.target == "stderr":
            sink = logging.StreamHandler(sys.stderr)
        else:
            sink = WatchedFileHandler(self.target, encoding="utf-8")
        sink.setFormatter(_JsonFormatter())
        self._listener = QueueListener(self._queue, sink)
        self._listener.start()

    def stop(self) -> None:
        """Flush what is queued and close the target."""
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one line; never blocks."""
        # Straight to the queue handler: no global logger state, and no caller lookup
        # (`logger.info` walks the stack) on the event loop.
        self._handler.handle(logging.LogRecord(LOGGER_NAME, logging.INFO, "", 0, entry, None, None))
