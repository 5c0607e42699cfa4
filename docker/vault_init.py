"""One-shot job: make Vault (OpenBao) ready for the stack, then add the secrets it lacks.

Run by the `vault-init` service of docker-compose.yml on every `docker compose up`. Idempotent:

1. Waits for Vault to answer, retrying connection errors and 5xx answers for a while (the
   server may still be starting, or electing itself leader right after an unseal).
2. A new Vault is initialised (one unseal key) and the unseal key and root token are written
   to `VAULT_INIT_FILE` (0600, on the `vault-unseal` volume) before anything else; a sealed
   Vault (after a restart) is unsealed with that key.
3. With the root token: a KV v2 mount for `VAULT_SECRET_PATH`, a policy that reads and writes
   that one secret, and the services' token `VAULT_TOKEN` holding that policy are created when
   missing. When `VAULT_TOKEN` changed, the token made for the previous value is revoked.
4. With `VAULT_TOKEN`, the way the services see Vault: generates only the managed secrets that
   are missing (so no restart replaces a key that tokens or sessions were signed with, and API
   keys written back stay), writes them as one new version with check-and-set, and prints
   names and versions, never a value.

A Vault that is already initialised and unsealed by someone else, with no `VAULT_INIT_FILE`,
is used as it is: only step 4 runs, and `VAULT_TOKEN` must already be valid there.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests.exceptions

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.secrets.config import SecretsSettings  # noqa: E402 - needs the repository path
from shared.secrets.errors import SecretsConfigError  # noqa: E402
from shared.secrets.generate import generate_secrets  # noqa: E402
from shared.secrets.registry import SecretRegistry  # noqa: E402

T = TypeVar("T")

# Generated together: a public key is only useful beside its own private half.
KEY_PAIRS = (("GATEWAY_ASSERTION_PRIVATE_KEY", "GATEWAY_ASSERTION_PUBLIC_KEY"),)
# How long a Vault that does not answer yet, or answers 5xx, is waited for.
READY_SECONDS = float(os.environ.get("VAULT_INIT_WAIT_SECONDS", "60"))
RETRY_PAUSE = 0.5
STARTING = "resume service shortly"
# Initialisation is never retried (the keys exist only in its answer), so it gets long.
INIT_TIMEOUT = 120.0
DEFAULT_INIT_FILE = "/var/lib/vault-unseal/init.json"
ACCESSOR_FILE_NAME = "service-token-accessor"
POLICY_NAME = "legacycointrader-services"
# The services never renew their token, so it lives as long as the server allows
# (docker/openbao/bao.hcl raises max_lease_ttl to match); vault-init recreates it if gone.
SERVICE_TOKEN_TTL = "87600h"  # noqa: S105  # nosec B105 - a duration, not a secret

# Not an answer yet: the server is starting, sealed, or has no active node for a moment.
TRANSIENT = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    hvac.exceptions.VaultDown,
    hvac.exceptions.InternalServerError,
    hvac.exceptions.BadGateway,
)


class InitError(Exception):
    """A condition the operator must fix; the message says which."""


@dataclass(frozen=True)
class InitMaterial:
    """What `sys/init` returned once: needed to unseal and to administer this Vault."""

    unseal_keys: tuple[str, ...]
    root_token: str


def retrying(work: Callable[[], T], what: str, address: str) -> T:
    """Run `work`, retrying transient failures until READY_SECONDS have passed."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        try:
            return work()
        except (*TRANSIENT, hvac.exceptions.InvalidRequest) as exc:
            # A new KV v2 mount answers 400 "... will resume service shortly" while it
            # sets itself up; any other 400 is a real refusal.
            if isinstance(exc, hvac.exceptions.InvalidRequest) and STARTING not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise InitError(
                    f"Vault at {address} did not answer {what} within {READY_SECONDS:g} s "
                    f"({type(exc).__name__})"
                ) from exc
            time.sleep(RETRY_PAUSE)


def read_material(path: Path) -> InitMaterial | None:
    """Return the saved unseal keys and root token; None when the file does not exist."""
    try:
        data = json.loads(path.read_text())
        keys = tuple(str(key) for key in data["unseal_keys_b64"])
        root = str(data["root_token"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InitError(f"{path} is not a readable init file ({type(exc).__name__})") from exc
    if not keys or not root:
        raise InitError(f"{path} holds no unseal key or no root token")
    return InitMaterial(unseal_keys=keys, root_token=root)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by its owner only from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.new")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def initialise(address: str, verify: bool | str) -> dict[str, Any]:
    """Call `sys/init` once, with time to spare: a retry after a lost answer lost the keys."""
    patient = hvac.Client(url=address, verify=verify, timeout=INIT_TIMEOUT)
    try:
        result: dict[str, Any] = patient.sys.initialize(secret_shares=1, secret_threshold=1)
    except TRANSIENT as exc:
        raise InitError(
            f"Vault at {address} did not answer its initialisation ({type(exc).__name__}); "
            "if it now reports itself initialised, its unseal key was never received: remove "
            "the vault-data volume and start again"
        ) from exc
    finally:
        patient.adapter.close()
    return result


def open_vault(
    admin: hvac.Client, address: str, verify: bool | str, init_file: Path
) -> InitMaterial | None:
    """Initialise or unseal Vault as needed; return the init material when there is some."""
    status = retrying(admin.sys.read_seal_status, "its seal status", address)
    material = read_material(init_file)
    if not status["initialized"]:
        if material is not None:
            raise InitError(
                f"Vault at {address} is not initialised but {init_file} exists: it belongs to "
                "another Vault's storage; move it away only if that storage is gone for good"
            )
        # Refuse before initialising when the file cannot be written: keys shown nowhere
        # would leave a Vault nobody can unseal.
        init_file.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(init_file.parent, os.W_OK):
            raise InitError(f"cannot write {init_file}; Vault was left uninitialised")
        result = initialise(address, verify)
        material = InitMaterial(
            unseal_keys=tuple(result["keys_base64"]), root_token=result["root_token"]
        )
        write_private(
            init_file,
            json.dumps(
                {"unseal_keys_b64": list(material.unseal_keys), "root_token": material.root_token}
            ),
        )
        print(
            f"vault-init: initialised Vault at {address}; unseal key and root token in {init_file}"
        )
        status = {"sealed": True}
    if status["sealed"]:
        if material is None:
            raise InitError(
                f"Vault at {address} is sealed and {init_file} does not exist; unseal it by "
                "hand or restore that file from the vault-unseal volume"
            )
        for key in material.unseal_keys:
            status = retrying(partial(admin.sys.submit_unseal_key, key), "unseal", address)
            if not status["sealed"]:
                break
        if status["sealed"]:
            raise InitError(f"Vault at {address} stayed sealed with the keys in {init_file}")
        print(f"vault-init: unsealed Vault at {address}")
    return material


def policy_text(mount: str, path: str) -> str:
    """Return the services' policy: read and write their one secret, nothing else."""
    return (
        f'path "{mount}/data/{path}" {{\n  capabilities = ["create", "read", "update", "patch"]\n}}\n'
        f'path "{mount}/metadata/{path}" {{\n  capabilities = ["read"]\n}}\n'
    )


def prepare(
    admin: hvac.Client, address: str, mount: str, path: str, token: str, accessor_file: Path
) -> None:
    """Create the KV v2 mount, the policy and the services' token where missing (as root)."""
    mounts = retrying(admin.sys.list_mounted_secrets_engines, "the mount list", address)
    mounted = mounts.get("data", mounts)
    if f"{mount}/" not in mounted:
        retrying(
            lambda: admin.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"}),
            "enabling the KV mount",
            address,
        )
        print(f"vault-init: mounted KV v2 at {mount}/")
    retrying(
        lambda: admin.sys.create_or_update_policy(POLICY_NAME, policy_text(mount, path)),
        "the policy",
        address,
    )
    try:
        found = retrying(lambda: admin.auth.token.lookup(token), "a token lookup", address)
        accessor = str(found["data"]["accessor"])
    except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
        created = retrying(
            lambda: admin.auth.token.create(
                id=token,
                policies=[POLICY_NAME],
                ttl=SERVICE_TOKEN_TTL,
                no_parent=True,
                display_name="legacycointrader-services",
            ),
            "creating the services' token",
            address,
        )
        accessor = str(created["auth"]["accessor"])
        print(f"vault-init: created the services' token (VAULT_TOKEN) with policy {POLICY_NAME}")
    previous = accessor_file.read_text().strip() if accessor_file.exists() else ""
    if previous and previous != accessor:
        try:
            retrying(
                lambda: admin.auth.token.revoke_accessor(previous),
                "revoking the previous token",
                address,
            )
            print("vault-init: revoked the services' previous token")
        except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
            pass  # already expired or revoked
    if previous != accessor:
        write_private(accessor_file, accessor + "\n")


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


def write_missing(
    client: hvac.Client, address: str, mount: str, path: str, registry: SecretRegistry
) -> int:
    """Write the missing managed secrets with check-and-set; return the exit status."""
    location = f"{mount}/{path}"
    # Check-and-set: if another writer got in between, read again and keep their keys.
    for _ in range(5):
        existing, version = retrying(
            lambda: read_current(client, mount, path), "reading the secret", address
        )
        missing = missing_secrets(existing, generate_secrets(), registry)
        if not missing:
            print(f"vault-init: {location} already holds every required secret; nothing written")
            return 0
        try:
            write = partial(
                client.secrets.kv.v2.create_or_update_secret,
                path=path,
                secret={**existing, **missing},
                cas=version,
                mount_point=mount,
            )
            response = retrying(write, "writing the secret", address)
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


def run(settings: SecretsSettings, init_file: Path) -> int:
    """Do steps 1 to 4 of the module docstring; return the exit status."""
    mount, path = settings.vault_mount_and_path()
    address, secret = settings.vault_addr, settings.vault_token
    if not address or secret is None:
        raise InitError("VAULT_ADDR and VAULT_TOKEN must be set")
    token = secret.get_secret_value()
    verify = settings.vault_verify_value()
    admin = hvac.Client(url=address, verify=verify, timeout=settings.vault_timeout)
    material = open_vault(admin, address, verify, init_file)
    if material is not None:
        admin.token = material.root_token
        prepare(admin, address, mount, path, token, init_file.with_name(ACCESSOR_FILE_NAME))
    client = hvac.Client(url=address, token=token, verify=verify, timeout=settings.vault_timeout)
    if not retrying(client.is_authenticated, "a token check", address):
        raise InitError(f"Vault at {address} refused VAULT_TOKEN")
    registry = SecretRegistry.load(settings.secrets_registry_path)
    return write_missing(client, address, mount, path, registry)


def main() -> int:
    """Run the job; return the exit status, with one clear line on failure."""
    try:
        settings = SecretsSettings.from_environment()
        settings.vault_mount_and_path()
        settings.vault_verify_value()
    except SecretsConfigError as exc:
        print(f"vault-init: {exc}", file=sys.stderr)
        return 2
    if not settings.vault_addr or settings.vault_token is None:
        print("vault-init: VAULT_ADDR and VAULT_TOKEN must be set", file=sys.stderr)
        return 2
    init_file = Path(os.environ.get("VAULT_INIT_FILE") or DEFAULT_INIT_FILE)
    try:
        return run(settings, init_file)
    except InitError as exc:
        print(f"vault-init: {exc}", file=sys.stderr)
    except hvac.exceptions.VaultError as exc:
        # hvac's message is the server's error list: names paths, never a secret value.
        print(f"vault-init: Vault at {settings.vault_addr} refused: {exc}", file=sys.stderr)
    except OSError as exc:
        print(f"vault-init: {exc.strerror} ({exc.filename})", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
