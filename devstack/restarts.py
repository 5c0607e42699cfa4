"""A stack process that is restarted with backoff when it exits once the stack is up.

Before the stack is ready an exit still stops everything (a process that cannot start would
only fail again); after it, the exit is reported and the process started again, 1 s later,
then 2, 4 … up to `MAX_DELAY_SECONDS`, back to 1 s once it has run `STABLE_SECONDS`.
"""

from __future__ import annotations

import signal
import time
from datetime import datetime
from multiprocessing.synchronize import Event
from typing import Any

from honcho.printer import Message
from honcho.process import Process

FIRST_DELAY_SECONDS = 1.0
MAX_DELAY_SECONDS = 30.0
STABLE_SECONDS = 30.0
STACK = "stack"


def restart_delay(failures: int) -> float:
    """Return how long to wait before the restart that follows `failures` quick exits."""
    return min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2.0 ** max(failures - 1, 0))


def _ignore(signum: int, frame: object) -> None:
    """Ignore a signal in the supervising process; the stack's manager decides when to stop.

    A Python handler, not SIG_IGN: handlers fall back to the default across exec, so the
    service itself still answers SIGTERM and SIGINT.
    """


class RestartingProcess(Process):  # type: ignore[misc]  # honcho ships no type hints
    """honcho's process, started again after an exit while the stack runs."""

    def __init__(self, *args: Any, ready: Event, stopping: Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ready = ready
        self.stopping = stopping

    def run(self, events: Any = None, ignore_signals: bool = False) -> None:
        self._events = events
        if ignore_signals:
            signal.signal(signal.SIGINT, _ignore)
            signal.signal(signal.SIGTERM, _ignore)
        failures = 0
        while True:
            started = time.monotonic()
            returncode = self._run_once()
            if self.stopping.is_set() or not self.ready.is_set():
                break
            failures = 1 if time.monotonic() - started >= STABLE_SECONDS else failures + 1
            delay = restart_delay(failures)
            self._say(f"{self.name} exited with status {returncode}; restarting in {delay:g} s")
            if self.stopping.wait(delay):
                break
        self._send_message({"returncode": returncode}, type="stop")

    def _run_once(self) -> int:
        self._child = self._child_ctor(self.cmd, env=self.env, cwd=self.cwd)
        self._send_message({"pid": self._child.pid}, type="start")
        for line in iter(self._child.stdout.readline, b""):
            if not self.quiet:
                self._send_message(line)
        self._child.stdout.close()
        return int(self._child.wait())

    def _say(self, text: str) -> None:
        if self._events is not None:
            self._events.put(Message("line", text + "\n", datetime.now(), STACK, None))
