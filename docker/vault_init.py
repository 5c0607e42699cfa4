"""One-shot job: put every managed secret a service requires into Vault, generated here.

Run by the `vault-init` service of docker-compose.yml after Vault is healthy. It reads
`VAULT_ADDR`, `VAULT_TOKEN` and `VAULT_SECRET_PATH` (`<mount>/<path>` on a KV v2 mount) the
way the services do, generates only what is missing (so a restart never replaces a key
that tokens or sessions were signed with), writes it as one new version with
check-and-set, and prints names and versions, never a value.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests.exceptions

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.secrets.config import SecretsSettings  # noqa: E402 - needs the repository path
from shared.secrets.errors import SecretsConfigError  # noqa: E402
from shared.secrets.generate import generate_secrets  # noqa: E402
from shared.secrets.registry import SecretRegistry  # noqa: E402

# Generated together: a public key is only useful beside its own private half.
KEY_PAIRS = (("GATEWAY_ASSERTION_PRIVATE_KEY", "GATEWAY_ASSERTION_PUBLIC_KEY"),)
CONNECT_ATTEMPTS = 30


def missing_secrets(
    existing: Mapping[str, Any], generated: Mapping[str, str], registry: SecretRegistry
) -> dict[str, str]:
    """Return the generated values whose secret (by name or alias) the store lacks."""
    present = {
        entry.name
        for entry in registry
        if any(isinstance(existing.get(key), str) and existing[key] for key in entry.candidates)
    }
    missing = {name: value for name, value in generated.items() if name not in present}
    for pair in KEY_PAIRS:
        if any(name in missing for name in pair):
            missing.update({name: generated[name] for name in pair})
    return missing


def read_current(client: hvac.Client, mount: str, path: str) -> tuple[dict[str, Any], int]:
    """Return the latest data and version; ({}, 0) when nothing is stored there yet."""
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=False
        )
    except hvac.exceptions.InvalidPath:
        return {}, 0
    body = response.get("data") or {}
    version = int((body.get("metadata") or {}).get("version") or 0)
    return dict(body.get("data") or {}), version


def wait_for_vault(client: hvac.Client, address: str) -> None:
    """Wait until Vault answers and accepts the token (the compose healthcheck usually did)."""
    for _ in range(CONNECT_ATTEMPTS):
        try:
            accepted = client.is_authenticated()
        except (requests.exceptions.RequestException, hvac.exceptions.VaultError):
            time.sleep(1)  # not listening yet, or still sealed
            continue
        if not accepted:
            raise SystemExit(f"vault-init: Vault at {address} refused VAULT_TOKEN")
        return
    raise SystemExit(f"vault-init: Vault at {address} did not answer in {CONNECT_ATTEMPTS} s")


def main() -> int:
    """Write the missing managed secrets; return the exit status."""
    try:
        settings = SecretsSettings.from_environment()
        mount, path = settings.vault_mount_and_path()
        verify = settings.vault_verify_value()
    except SecretsConfigError as exc:
        print(f"vault-init: {exc}", file=sys.stderr)
        return 2
    if not settings.vault_addr or settings.vault_token is None:
        print("vault-init: VAULT_ADDR and VAULT_TOKEN must be set", file=sys.stderr)
        return 2
    client = hvac.Client(
        url=settings.vault_addr,
        token=settings.vault_token.get_secret_value(),
        verify=verify,
        timeout=settings.vault_timeout,
    )
    wait_for_vault(client, settings.vault_addr)
    registry = SecretRegistry.load(settings.secrets_registry_path)
    location = f"{mount}/{path}"

    # Check-and-set: if another writer got in between, read again and keep their keys.
    for _ in range(5):
        existing, version = read_current(client, mount, path)
        missing = missing_secrets(existing, generate_secrets(), registry)
        if not missing:
            print(f"vault-init: {location} already holds every required secret; nothing written")
            return 0
        try:
            response = client.secrets.kv.v2.create_or_update_secret(
                path=path, secret={**existing, **missing}, cas=version, mount_point=mount
            )
        except hvac.exceptions.InvalidRequest as exc:
            if "check-and-set" in str(exc):
                continue
            raise
        new_version = (response.get("data") or {}).get("version", "?")
        print(
            f"vault-init: wrote {', '.join(sorted(missing))} to {location} (version {new_version})"
        )
        return 0
    print(f"vault-init: {location} kept changing; gave up", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
