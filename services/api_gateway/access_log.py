"""The JSON access log, written from a background thread so the event loop never blocks."""

from __future__ import annotations

import json
import logging
import queue
import sys
import time
from datetime import UTC, datetime
from logging.handlers import QueueListener, WatchedFileHandler
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
        at = entry.get("time", record.created)
        entry["time"] = (
            datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")
        ).replace("+00:00", "Z")
        return json.dumps({name: entry.get(name) for name in FIELDS}, separators=(",", ":"))


class _Listener(QueueListener):
    def prepare(self, record: Any) -> logging.LogRecord:
        # Runs in the listener thread: the loop only queued a plain dict.
        return logging.LogRecord(LOGGER_NAME, logging.INFO, "", 0, record, None, None)


class AccessLog:
    """One JSON line per request to stdout, stderr or a file."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._queue: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
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
        self._listener = _Listener(self._queue, sink)
        self._listener.start()

    def stop(self) -> None:
        """Flush what is queued and close the target."""
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None

    def write(self, entry: dict[str, Any]) -> None:
        """Queue one line; never blocks.

        The entry goes to the queue as it is: building the `LogRecord` (pid, thread and
        process names) and the JSON happen in the listener thread, off the event loop.
        """
        entry["time"] = time.time()
        self._queue.put_nowait(entry)
