"""One-shot job: make Vault (OpenBao) ready for the stack, then provision least privilege.

Run by the `vault-init` service of docker-compose.yml on every `docker compose up`. Idempotent:

1. Waits for Vault to answer, retrying connection errors and 5xx answers for a while (the
   server may still be starting, or electing itself leader right after an unseal).
2. A new Vault is initialised (one unseal key) and the unseal key and root token are written
   to `VAULT_INIT_FILE` (0600, on the `vault-unseal` volume) before anything else; a sealed
   Vault (after a restart) is unsealed with that key.
3. With the root token (this job is the only holder of it): a KV v2 mount for
   `VAULT_SECRET_PATH`; the token all services shared before the per-service layout is
   revoked and its policy deleted.
4. `python -m shared.secrets provision --vault --credentials-dir VAULT_CREDENTIALS_DIR`, with
   the root token and `VAULT_SECRET_LAYOUT=per-service`: one policy and one AppRole per
   service, the managed secrets that are missing in each service's path (taken from the old
   single document when it holds them, else generated; a stored value is never replaced), and
   `DIR/<service>/role_id` and `secret_id` (0600, owned by the user this job runs as, the
   services' user). A secret id Vault still accepts is kept; `--rotate-secret-id SERVICE`
   destroys that service's secret id first, so a new one is written.
5. Only when asked, `--rotate-key signing|assertion|session`: the rotation ceremony of the
   gateway's keys (`python -m services.api_gateway rotate-signing-key` /
   `rotate-assertion-key`) or of the session secret (`python -m services.frontend
   rotate-session-secret`) with the root token, which no other container holds. Running
   services take the new key up without a restart.
6. The metrics scrape token, read back from Vault, into `DIR/prometheus/metrics_token` (0600,
   the same user): the credentials file Prometheus presents at every service's `/metrics`.

A Vault that is already initialised and unsealed by someone else, with no `VAULT_INIT_FILE`,
is used as it is: `VAULT_TOKEN` must then hold a root or provisioning token for this job.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess  # nosec B404 - runs this interpreter's own provisioning command
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests.exceptions

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from shared.metrics import SCRAPE_TOKEN_SECRET  # noqa: E402 - needs the repository path
from shared.secrets import layout  # noqa: E402
from shared.secrets.config import SecretsSettings  # noqa: E402
from shared.secrets.errors import SecretsConfigError  # noqa: E402
from shared.secrets.registry import Consumer, SecretRegistry  # noqa: E402

T = TypeVar("T")

# How long a Vault that does not answer yet, or answers 5xx, is waited for.
READY_SECONDS = float(os.environ.get("VAULT_INIT_WAIT_SECONDS", "60"))
RETRY_PAUSE = 0.5
STARTING = "resume service shortly"
# Initialisation is never retried (the keys exist only in its answer), so it gets long.
INIT_TIMEOUT = 120.0
DEFAULT_INIT_FILE = "/var/lib/vault-unseal/init.json"
# Under VAULT_CREDENTIALS_DIR: Prometheus' volume and the file its scrape config names.
PROMETHEUS_FOLDER = "prometheus"
SCRAPE_TOKEN_FILE = "metrics_token"  # noqa: S105  # nosec B105 - a file name
DEFAULT_CREDENTIALS_DIR = "/var/lib/vault-credentials"
# Left by stacks from before the per-service layout: the shared token's accessor, its policy.
ACCESSOR_FILE_NAME = "service-token-accessor"
LEGACY_POLICY = "legacycointrader-services"
# What `--rotate-key` rotates, and the module command that does it.
ROTATABLE_KEYS = {
    "signing": ("services.api_gateway", "rotate-signing-key"),
    "assertion": ("services.api_gateway", "rotate-assertion-key"),
    "session": ("services.frontend", "rotate-session-secret"),
}

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


def ensure_kv_mount(admin: hvac.Client, address: str, mount: str, path: str) -> None:
    """Enable KV v2 at `mount` when missing (the provisioning writes `path` in it)."""
    mounts = retrying(admin.sys.list_mounted_secrets_engines, "the mount list", address)
    mounted = mounts.get("data", mounts)
    if f"{mount}/" not in mounted:
        retrying(
            lambda: admin.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"}),
            "enabling the KV mount",
            address,
        )
        print(f"vault-init: mounted KV v2 at {mount}/")

    def probe() -> None:
        with contextlib.suppress(hvac.exceptions.InvalidPath):
            admin.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)

    # A new KV v2 mount answers 400 "... resume service shortly" while it sets itself up;
    # the provisioning does not retry that, so wait here for a real answer first.
    retrying(probe, "the KV mount", address)


def retire_shared_token(admin: hvac.Client, address: str, accessor_file: Path) -> None:
    """Revoke the one token all services shared before AppRole, and its policy.

    Stacks started before the per-service layout kept that token's accessor beside init.json;
    left alive, it would still read every secret of the old single document.
    """
    if accessor_file.exists():
        accessor = accessor_file.read_text().strip()
        if accessor:
            try:
                retrying(
                    lambda: admin.auth.token.revoke_accessor(accessor),
                    "revoking the shared services' token",
                    address,
                )
                print("vault-init: revoked the token the services used to share")
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden):
                pass  # already expired or revoked
        accessor_file.unlink()
    try:
        policies = retrying(admin.sys.list_policies, "the policy list", address)
    except hvac.exceptions.Forbidden:
        # A provisioning token of a Vault run elsewhere may not list policies; that Vault
        # never had the policy this job used to create.
        return
    names = (policies.get("data") or policies).get("policies", [])
    if LEGACY_POLICY in names:
        retrying(lambda: admin.sys.delete_policy(LEGACY_POLICY), "the old policy", address)
        print(f"vault-init: deleted the shared policy {LEGACY_POLICY}")


def destroy_secret_ids(
    admin: hvac.Client,
    address: str,
    approle: str,
    credentials_dir: Path,
    services: Sequence[str],
) -> None:
    """Destroy the secret id each named service holds, so the provisioning writes a new one."""
    for service in services:
        secret_file = credentials_dir / service / "secret_id"
        try:
            secret_id = secret_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            print(f"vault-init: {service} holds no secret id yet; one is written below")
            continue
        if secret_id:
            retrying(
                partial(
                    admin.auth.approle.destroy_secret_id,
                    role_name=layout.policy_name(Consumer(service)),
                    secret_id=secret_id,
                    mount_point=approle,
                ),
                "destroying a secret id",
                address,
            )
        print(f"vault-init: destroyed the secret id of {service}")


def provision(address: str, token: str, credentials_dir: Path) -> int:
    """Run `python -m shared.secrets provision` as compose documents it; return its status."""
    return run_module(
        address,
        token,
        "shared.secrets",
        "provision",
        "--vault",
        "--credentials-dir",
        str(credentials_dir),
    )


def rotate_key(address: str, token: str, key: str) -> int:
    """Run the rotation of one key (`signing`, `assertion`, `session`) on the per-service
    layout; return its status. It prints key ids and times, never a key."""
    return run_module(address, token, *ROTATABLE_KEYS[key])


def run_module(address: str, token: str, *argv: str) -> int:
    """Run `python -m ARGV` of this repository with the provisioning token.

    The token reaches the child through its environment only (never argv, which other
    processes can list); the children print names and paths, never a value.
    """
    env = {
        **os.environ,
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": address,
        "VAULT_TOKEN": token,
        "VAULT_SECRET_LAYOUT": "per-service",  # nosec B105 - a layout name
    }
    command = [sys.executable, "-m", *argv]
    # A fixed command from this interpreter, no shell.
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, check=False)  # noqa: S603  # nosec B603
    return result.returncode


def run(
    settings: SecretsSettings,
    init_file: Path,
    credentials_dir: Path,
    rotate: Sequence[str] = (),
    rotate_keys: Sequence[str] = (),
) -> int:
    """Do steps 1 to 5 of the module docstring; return the exit status."""
    mount, path = settings.vault_mount_and_path()
    address = settings.vault_addr
    if not address:
        raise InitError("VAULT_ADDR must be set")
    verify = settings.vault_verify_value()
    admin = hvac.Client(url=address, verify=verify, timeout=settings.vault_timeout)
    material = open_vault(admin, address, verify, init_file)
    if material is not None:
        token = material.root_token
    elif settings.vault_token is not None:
        token = settings.vault_token.get_secret_value()
    else:
        raise InitError(
            f"{init_file} does not exist: for a Vault initialised elsewhere, set VAULT_TOKEN "
            "to a root or provisioning token for this job"
        )
    admin.token = token
    if not retrying(admin.is_authenticated, "a token check", address):
        raise InitError(f"Vault at {address} refused the provisioning token")
    ensure_kv_mount(admin, address, mount, path)
    retire_shared_token(admin, address, init_file.with_name(ACCESSOR_FILE_NAME))
    if rotate:
        approle = settings.vault_approle_mount.strip("/") or "approle"
        destroy_secret_ids(admin, address, approle, credentials_dir, rotate)
    status = provision(address, token, credentials_dir)
    if status == 0:
        write_scrape_token(admin, mount, path, credentials_dir)
    for key in rotate_keys:
        if status != 0:
            break
        status = rotate_key(address, token, key)
    return status


def write_scrape_token(admin: hvac.Client, mount: str, path: str, credentials_dir: Path) -> None:
    """Copy the metrics scrape token from its home in Vault to Prometheus' credentials file."""
    entry = SecretRegistry.load().get(SCRAPE_TOKEN_SECRET)
    if entry is None:
        raise InitError(f"{SCRAPE_TOKEN_SECRET} is not declared in config/managed_secrets.yaml")
    answer = admin.secrets.kv.v2.read_secret_version(
        path=f"{path}/{layout.home(entry)}", mount_point=mount, raise_on_deleted_version=True
    )
    value = answer["data"]["data"].get(SCRAPE_TOKEN_SECRET)
    if not isinstance(value, str) or not value:
        raise InitError(f"{SCRAPE_TOKEN_SECRET} is missing in Vault after provisioning")
    target = credentials_dir / PROMETHEUS_FOLDER / SCRAPE_TOKEN_FILE
    if target.exists() and target.read_text() == value:
        return
    write_private(target, value)
    print(f"vault-init: wrote {target} (the token Prometheus presents at /metrics)")


def arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the job's options: none on an ordinary `up`."""
    parser = argparse.ArgumentParser(prog="vault_init.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rotate-secret-id",
        action="append",
        default=[],
        choices=[service.value for service in Consumer],
        metavar="SERVICE",
        help="destroy this service's AppRole secret id and write a new one (repeatable): "
        + ", ".join(service.value for service in Consumer),
    )
    parser.add_argument(
        "--rotate-key",
        action="append",
        default=[],
        choices=list(ROTATABLE_KEYS),
        metavar="KEY",
        help="after provisioning, rotate the gateway's token-signing key (signing), its "
        "downstream assertion key (assertion) or the frontend's session secret (session), "
        "as `python -m services.api_gateway rotate-KEY-key` / `python -m services.frontend "
        "rotate-session-secret` do, with the root token (repeatable)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; return the exit status, with one clear line on failure."""
    options = arguments(sys.argv[1:] if argv is None else argv)
    try:
        settings = SecretsSettings.from_environment()
        settings.vault_mount_and_path()
        settings.vault_verify_value()
    except SecretsConfigError as exc:
        print(f"vault-init: {exc}", file=sys.stderr)
        return 2
    if not settings.vault_addr:
        print("vault-init: VAULT_ADDR must be set", file=sys.stderr)
        return 2
    init_file = Path(os.environ.get("VAULT_INIT_FILE") or DEFAULT_INIT_FILE)
    credentials_dir = Path(os.environ.get("VAULT_CREDENTIALS_DIR") or DEFAULT_CREDENTIALS_DIR)
    try:
        return run(
            settings, init_file, credentials_dir, options.rotate_secret_id, options.rotate_key
        )
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
