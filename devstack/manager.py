"""honcho's process manager, with the hooks the stack needs."""

from __future__ import annotations

import functools
import multiprocessing
import threading
from collections.abc import Callable
from datetime import datetime

from honcho.manager import Manager
from honcho.printer import Message, Printer

from devstack.restarts import STACK, RestartingProcess


class StackManager(Manager):  # type: ignore[misc]  # honcho ships no type hints
    """honcho's manager, plus a hook that starts the health watcher after the fork, and
    processes restarted with backoff once the stack is ready (devstack/restarts.py)."""

    def __init__(self, printer: Printer, on_started: Callable[[], None]) -> None:
        super().__init__(printer)
        self.stopping = threading.Event()
        # Shared with the forked process supervisors, so made before the fork.
        self.ready = multiprocessing.Event()
        self._stopping_all = multiprocessing.Event()
        self._process_ctor = functools.partial(
            RestartingProcess, ready=self.ready, stopping=self._stopping_all
        )
        self._on_started = on_started

    def _start(self) -> None:
        # Start the watcher thread only after honcho has forked its readers, so no
        # thread is alive during fork().
        super()._start()
        self._on_started()

    def terminate(self) -> None:
        # First, so no supervisor restarts the process it is about to see end.
        self._stopping_all.set()
        self.stopping.set()
        super().terminate()

    def say(self, text: str) -> None:
        """Print a line under the `stack` prefix, through honcho's queue (thread-safe)."""
        self.events.put(Message("line", text + "\n", datetime.now(), STACK, None))
