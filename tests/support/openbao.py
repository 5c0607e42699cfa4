"""A real OpenBao server for the tests (`bao server -dev`), with a root client to set it up.

    with OpenBao(tmp_path) as bao:                 # plain HTTP on bao.url
        bao.put("secret/app", {"KEY": "value"})
        token = bao.token(policies=["reader"], ttl="30s")

`OpenBao(tmp_path, tls=trustme.CA())` also serves HTTPS on `bao.tls_url` with a certificate
of that CA, for `VAULT_VERIFY` tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hvac
import trustme

from devstack.openbao import OpenBaoDevServer

ROOT_TOKEN = "openbao-test-root-token"


class OpenBao(OpenBaoDevServer):
    """An OpenBao dev server plus a root hvac client for seeding and inspecting it."""

    def __init__(self, workdir: Path, *, tls: trustme.CA | None = None) -> None:
        files = None
        if tls is not None:
            cert = tls.issue_cert("127.0.0.1", "localhost")
            files = (workdir / "openbao-cert.pem", workdir / "openbao-key.pem")
            cert.cert_chain_pems[0].write_to_path(str(files[0]))
            cert.private_key_pem.write_to_path(str(files[1]))
        super().__init__(workdir, root_token=ROOT_TOKEN, tls=files)
        self.root = hvac.Client(url=self.url, token=ROOT_TOKEN, timeout=10)

    def start(self, timeout: float = 30.0) -> OpenBao:
        """Start (or start again, empty, on the same port) the server."""
        super().start(timeout)
        # A fresh connection pool: connections to a stopped server are dead.
        self.root.adapter.close()
        self.root = hvac.Client(url=self.url, token=ROOT_TOKEN, timeout=10)
        return self

    def __enter__(self) -> OpenBao:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.root.adapter.close()
        self.stop()

    def put(self, secret_path: str, data: dict[str, Any]) -> int:
        """Write a new KV v2 version at `<mount>/<path>`; return its number."""
        mount, _, path = secret_path.partition("/")
        response = self.root.secrets.kv.v2.create_or_update_secret(
            path=path, secret=data, mount_point=mount
        )
        return int(response["data"]["version"])

    def read(self, secret_path: str) -> dict[str, Any] | None:
        """Return the latest live data at `<mount>/<path>`, None when absent or deleted."""
        mount, _, path = secret_path.partition("/")
        try:
            response = self.root.secrets.kv.v2.read_secret_version(
                path=path, mount_point=mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        data: dict[str, Any] = response["data"]["data"]
        return data

    def version(self, secret_path: str) -> int:
        """Return the current version number (0 when absent)."""
        mount, _, path = secret_path.partition("/")
        try:
            response = self.root.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
        except hvac.exceptions.InvalidPath:
            return 0
        return int(response["data"]["current_version"])

    def delete_latest(self, secret_path: str) -> None:
        """Soft-delete the latest version, as `bao kv delete` does."""
        mount, _, path = secret_path.partition("/")
        self.root.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point=mount)

    def policy(self, name: str, rules: str) -> None:
        """Write an ACL policy."""
        self.root.sys.create_or_update_policy(name=name, policy=rules)

    def token(
        self,
        *,
        policies: list[str],
        ttl: str = "1h",
        renewable: bool = True,
        explicit_max_ttl: str | None = None,
    ) -> str:
        """Create a token with these policies (and `default`, as Vault gives every token)."""
        response = self.root.auth.token.create(
            policies=policies,
            ttl=ttl,
            renewable=renewable,
            explicit_max_ttl=explicit_max_ttl,
        )
        token: str = response["auth"]["client_token"]
        return token
