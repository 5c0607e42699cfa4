"""`make run-vault`: the stack with its secrets in a local OpenBao instead of `.env`.

A dev server (in memory, gone when the stack stops) is started on a free loopback port,
provisioned like production (`shared.secrets.provision`: per-service policies and AppRoles,
generated secrets), and each process gets only its own AppRole credentials: no process
sees the root token or a managed secret in its environment. The root token is kept in
`var/openbao/root-token` (0600) for a developer who wants to look inside with `bao`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from devstack.errors import StackError
from devstack.openbao import OpenBaoDevServer
from devstack.processes import StackProcess
from shared.secrets import SecretRegistry, SecretsError, SecretsSettings
from shared.secrets.provision import provision_vault
from shared.secrets.registry import Consumer

SECRET_PATH = "secret/legacycointrader"  # noqa: S105  # nosec B105 - a path


@dataclass(frozen=True)
class LocalVault:
    """The running dev server and where each service's credentials are."""

    url: str
    credentials: Path
    root_token_file: Path

    def environment(self, base: Mapping[str, str], process: StackProcess) -> dict[str, str]:
        """Return `base` without any managed secret, plus this process's Vault sign-in."""
        managed = {name for entry in SecretRegistry.load() for name in entry.candidates}
        env = {key: value for key, value in base.items() if key not in managed}
        # Each service names itself to the secrets layer; SECRETS_SERVICE would only override.
        env = {
            key: value
            for key, value in env.items()
            if not key.startswith("VAULT_") and key != "SECRETS_SERVICE"
        }
        service = consumer_of(process)
        folder = self.credentials / service.value
        env.update(
            {
                "SECRETS_PROVIDER": "vault",
                "VAULT_ADDR": self.url,
                "VAULT_SECRET_PATH": SECRET_PATH,
                "VAULT_SECRET_LAYOUT": "per-service",  # nosec B105 - a layout name
                "VAULT_ROLE_ID": (folder / "role_id").read_text(encoding="utf-8").strip(),
                "VAULT_SECRET_ID_FILE": str(folder / "secret_id"),
            }
        )
        return env


def consumer_of(process: StackProcess) -> Consumer:
    """Return whose secrets a process reads (every stub reads the stubs')."""
    return Consumer.STUB if process.stub else Consumer(process.name)


@contextmanager
def local_vault(workdir: Path) -> Iterator[LocalVault]:
    """Start and provision a dev server; stop it (and lose its data) on exit."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o700)
    root_token = secrets.token_urlsafe(32)
    token_file = workdir / "root-token"
    token_file.touch(mode=0o600)
    token_file.chmod(0o600)
    token_file.write_text(root_token + "\n", encoding="utf-8")
    server = OpenBaoDevServer(workdir, root_token=root_token)
    server.start()
    try:
        settings = SecretsSettings(
            secrets_provider="vault",
            vault_addr=server.url,
            vault_token=SecretStr(root_token),
            vault_secret_path=SECRET_PATH,
            vault_secret_layout="per-service",  # noqa: S106  # nosec B106 - a layout name
        )
        try:
            provision_vault(settings, workdir / "credentials")
        except SecretsError as exc:
            raise StackError(f"could not provision the local OpenBao: {exc}") from None
        yield LocalVault(
            url=server.url, credentials=workdir / "credentials", root_token_file=token_file
        )
    finally:
        server.stop()
