"""`python -m devstack` (what `make run` calls) as a subprocess, its output read line by line."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from devstack import REPO_ROOT
from devstack.ports import free_port

DEVSTACK = [sys.executable, "-m", "devstack"]
STARTED = re.compile(r"system\s+\| (?P<name>\S+) started \(pid=(?P<pid>\d+)\)")


def distinct_free_ports(count: int) -> list[int]:
    """Return `count` different loopback ports nobody listens on right now."""
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


class StackRunner:
    """The runner as a subprocess in its own session; its output is read in a thread."""

    def __init__(
        self,
        env: Mapping[str, str],
        env_file: Path,
        *,
        timeout: float = 120,
        args: tuple[str, ...] = (),
    ) -> None:
        self.process = subprocess.Popen(
            [
                *DEVSTACK,
                "--env-file",
                str(env_file),
                "--timeout",
                str(timeout),
                *args,
            ],
            cwd=REPO_ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    @property
    def output(self) -> str:
        """Everything the runner printed so far."""
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 180.0) -> None:
        """Read until a line contains `text`; fail with the output if the runner ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                pytest.fail(f"devstack ended before {text!r}:\n{self.output}")
            if text in line:
                return
        pytest.fail(f"no {text!r} from devstack:\n{self.output}")

    def children(self) -> dict[str, int]:
        """Return the pid of every process honcho said it started, by name."""
        return {m["name"]: int(m["pid"]) for m in map(STARTED.search, self.lines) if m}

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the runner to end; return its status."""
        returncode = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return returncode

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Stop the runner (and so every process) with a signal; return its status."""
        self.process.send_signal(signum)
        return self.wait_exit()

    def kill_leftovers(self) -> None:
        """Kill the runner and any child it left behind (after a failed test)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in self.children().values():
            if running(pid):
                os.killpg(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Tell whether `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until_gone(pids: list[int], timeout: float = 15.0) -> list[int]:
    """Wait until none of `pids` runs; return those still running after `timeout`."""
    deadline = time.monotonic() + timeout
    alive = [pid for pid in pids if running(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in alive if running(pid)]
    return alive


def run_devstack(
    env: Mapping[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the runner to its end (a refusal, `--procfile`); return what it printed."""
    return subprocess.run(
        [*DEVSTACK, *args],
        cwd=REPO_ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
