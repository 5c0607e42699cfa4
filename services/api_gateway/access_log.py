"""The JSON access log, written from a background thread so the event loop never blocks."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import queue
import sys
from json.encoder import encode_basestring_ascii
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


# Lines are formatted by hand, with json.dumps' own escaping of a string (C, ASCII-only
# output): byte for byte what json.dumps wrote, at a quarter of its CPU (it builds a new
# encoder per call, then walks a dict).
_quote = encode_basestring_ascii


def _json(value: object) -> str:
    # Exact types: a bool is an int, and a subclass may print itself differently.
    if value is None:
        return "null"
    if type(value) is str:
        return _quote(value)
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float and math.isfinite(value):
        return float.__repr__(value)
    return json.dumps(value)


class _Timestamps:
    """`utc_time`, formatted once per second: a line differs from the last in milliseconds."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, seconds: float) -> str:
        whole = math.floor(seconds)
        micros = round((seconds - whole) * 1_000_000)
        if micros >= 1_000_000:
            whole, micros = whole + 1, micros - 1_000_000
        if whole != self._second:
            self._second = whole
            self._prefix = utc_time(whole)[:-5]  # without ".000Z"
        return f"{self._prefix}.{micros // 1000:03d}Z"


def _line(entry: dict[str, Any], timestamp: _Timestamps) -> str:
    # FIELDS, written out: a third of the CPU of a loop over them.
    get = entry.get
    level = "error" if (get("status") or 0) >= 500 else "info"
    return (
        f'{{"time":"{timestamp(entry["time"])}","level":"{level}","service":"gateway",'
        f'"request_id":{_json(get("request_id"))},"trace_id":{_json(get("trace_id"))},'
        f'"method":{_json(get("method"))},"route":{_json(get("route"))},'
        f'"path":{_json(get("path"))},"status":{_json(get("status"))},'
        f'"duration_ms":{_json(get("duration_ms"))},"user":{_json(get("user"))},'
        f'"auth_method":{_json(get("auth_method"))},"key_id":{_json(get("key_id"))},'
        f'"upstream":{_json(get("upstream"))},"client":{_json(get("client"))}}}'
    )


class _JsonLinesFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._timestamp = _Timestamps()

    def format(self, record: logging.LogRecord) -> str:
        entries: list[dict[str, Any]] = record.msg if isinstance(record.msg, list) else []
        return "\n".join([_line(entry, self._timestamp) for entry in entries])


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
