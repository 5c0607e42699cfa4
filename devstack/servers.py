"""One uvicorn process on a free loopback port, for the tests and the bench."""

from __future__ import annotations

import os
import signal
import subprocess  # nosec B404 - starts our own services with a fixed argv
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import httpx

from devstack import REPO_ROOT
from devstack.launch import HOST, uvicorn_command
from devstack.ports import free_port


class ServerProcess:
    """One `uvicorn module:app` process on 127.0.0.1, stopped on exit."""

    def __init__(
        self,
        app: str,
        *,
        env: Mapping[str, str],
        port: int | None = None,
        health_path: str = "/healthz",
        log_path: Path | None = None,
        extra_args: tuple[str, ...] = (),
        command: Sequence[str] | None = None,
    ) -> None:
        self.app = app
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.health_path = health_path
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.extra_args = extra_args
        # Run exactly this command line (e.g. a launch command of the stack) instead.
        self.command = list(command) if command is not None else None
        self.process: subprocess.Popen[bytes] | None = None
        self._log: BinaryIO | None = None

    @property
    def argv(self) -> list[str]:
        """Return the command line the process runs."""
        if self.command is not None:
            return self.command
        return [*uvicorn_command(self.app, host=HOST, port=self.port), *self.extra_args]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the process and wait until its health endpoint answers 200."""
        if self.log_path is not None:
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603  # nosec B603 - our argv, no shell
            self.argv,
            cwd=REPO_ROOT,
            env=self.env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.app} exited with {self.process.returncode}; log: {self.log_path}"
                )
            try:
                if httpx.get(self.url + self.health_path, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.app} did not become healthy on {self.url}; log: {self.log_path}")

    def peak_memory_kib(self) -> int:
        """Return the process's peak resident memory so far (VmHWM), in KiB."""
        if self.process is None:
            raise RuntimeError(f"{self.app} is not running")
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")
        )

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
