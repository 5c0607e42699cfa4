"""The start-up watcher: every `/healthz`, the first admin, the URLs; everything stops on failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import httpx

from devstack.admin import create_first_admin
from devstack.errors import StackError
from devstack.manager import StackManager
from devstack.ports import base_url
from devstack.processes import STUB_NAMES, StackProcess

READY_LINE = "stack ready"


class StartupWatcher(threading.Thread):
    """Wait for every `/healthz`, create the first admin, print the URLs; stop all on failure."""

    def __init__(
        self,
        manager: StackManager,
        processes: list[StackProcess],
        ports: Mapping[str, int],
        env: Mapping[str, str],
        timeout: float,
    ) -> None:
        super().__init__(name="startup-watcher", daemon=True)
        self.manager = manager
        self.processes = processes
        self.ports = ports
        self.env = env
        self.timeout = timeout
        self.failed = False

    def run(self) -> None:
        try:
            self._run()
        except StackError as exc:
            if not self.manager.stopping.is_set():
                self.failed = True
                self.manager.say(f"error: {exc}; stopping everything")
                self.manager.terminate()

    def _run(self) -> None:
        deadline = time.monotonic() + self.timeout
        names = [process.name for process in self.processes]
        with httpx.Client(timeout=2.0) as client:
            admin_lines: list[str] = []
            if "portfolio" in names:
                self._wait_healthy(client, ["portfolio"], deadline)
                login_url = base_url(self.ports["frontend"]) + "/"
                admin_lines = create_first_admin(self.env, login_url, self.timeout)
            self._wait_healthy(client, names, deadline)
        # From here on a process that exits is restarted instead of stopping the stack.
        self.manager.ready.set()
        # The admin's password comes last, below the URLs, where it does not scroll away.
        self._print_urls()
        for line in admin_lines:
            self.manager.say(line)
        self.manager.say("Ctrl-C stops everything.")

    def _wait_healthy(self, client: httpx.Client, names: list[str], deadline: float) -> None:
        pending = list(names)
        while pending:
            if self.manager.stopping.is_set():
                raise StackError("stopped before every process was healthy")
            for name in list(pending):
                try:
                    response = client.get(base_url(self.ports[name]) + "/healthz")
                except httpx.HTTPError:
                    continue
                if response.status_code == 200:
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise StackError(
                    f"no healthy /healthz after {self.timeout:.0f} s from: " + ", ".join(pending)
                )
            if pending:
                time.sleep(0.2)

    def _print_urls(self) -> None:
        say = self.manager.say
        ports = self.ports
        running = {process.name for process in self.processes}
        say(f"{READY_LINE}: {len(self.processes)} processes answer /healthz")
        if "frontend" in running:
            say(f"  frontend   {base_url(ports['frontend'])}/   (sign in here)")
        if "gateway" in running:
            gateway = base_url(ports["gateway"])
            say(f"  gateway    {gateway}/   (API docs {gateway}/docs)")
        if "portfolio" in running:
            say(
                f"  portfolio  {base_url(ports['portfolio'])}/   (identity store; call it via the gateway)"
            )
        stubs = [f"{name} :{ports[name]}" for name in STUB_NAMES if name in running]
        if stubs:
            say(
                "  stubs      "
                + ", ".join(stubs)
                + "   (reach them at /api/<service>/ on the gateway)"
            )
