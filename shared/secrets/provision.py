"""Provision Vault for least privilege: policies, AppRoles, missing secrets, credentials.

`python -m shared.secrets provision --vault --credentials-dir DIR`, run with `VAULT_ADDR` and a
root or provisioning `VAULT_TOKEN` (the only place such a token is used), does, idempotently:

1. one policy per service (`legacycointrader-<service>`, shared/secrets/layout.py);
2. the AppRole auth method (`VAULT_APPROLE_MOUNT`, default `approle`) and one role per
   service with exactly its policy;
3. every required secret, and every optional one `generate_secrets` makes (the metrics
   scrape token), that is missing from its path under `VAULT_SECRET_PATH`: taken from
   the single-document layout at `VAULT_SECRET_PATH` itself when present there (a
   migration), else generated; an existing value is never replaced;
4. `DIR/<service>/role_id` and `DIR/<service>/secret_id` (files 0600, folders 0700); a secret
   id Vault still accepts is kept, a missing or dead one is replaced.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hvac
import hvac.exceptions
import requests.exceptions

from shared.secrets import layout
from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsConfigError, SecretsUnavailableError
from shared.secrets.generate import generate_secrets
from shared.secrets.registry import Consumer, SecretRegistry
from shared.secrets.stores.base import display_url

# A token lives an hour and is renewed; after four hours the service logs in again.
LOGIN_TTL = "1h"
LOGIN_MAX_TTL = "4h"
# The halves of one key pair: when either is missing both are generated anew.
KEY_PAIRS = (("GATEWAY_ASSERTION_PRIVATE_KEY", "GATEWAY_ASSERTION_PUBLIC_KEY"),)


@dataclass
class ProvisionReport:
    """What a run did; names and paths only, never a value."""

    policies: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    written: dict[str, list[str]] = field(default_factory=dict)
    migrated: list[str] = field(default_factory=list)
    new_secret_ids: list[str] = field(default_factory=list)
    kept_secret_ids: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return the report as lines for the operator."""
        out = [f"policy {name}: written" for name in self.policies]
        out += [f"approle {name}: written" for name in self.roles]
        for path, names in self.written.items():
            out.append(f"{path}: wrote {', '.join(names)}")
        if not self.written:
            out.append("secrets: every required secret present, nothing written")
        if self.migrated:
            out.append("taken from the single-document layout: " + ", ".join(self.migrated))
        out += [f"credentials {name}: new secret id" for name in self.new_secret_ids]
        out += [f"credentials {name}: secret id kept" for name in self.kept_secret_ids]
        return out


def provision_vault(
    settings: SecretsSettings,
    credentials_dir: Path,
    *,
    registry: SecretRegistry | None = None,
    token_ttl: str = LOGIN_TTL,
    token_max_ttl: str = LOGIN_MAX_TTL,
    generate: Callable[[], dict[str, str]] = generate_secrets,
) -> ProvisionReport:
    """Provision Vault as the module docstring says; blocking."""
    registry = registry if registry is not None else SecretRegistry.load()
    addr = settings.vault_address() if settings.vault_addr else None
    if not addr or settings.vault_token is None:
        raise SecretsConfigError(
            "provisioning needs VAULT_ADDR and a root or provisioning VAULT_TOKEN"
        )
    mount, base = settings.vault_mount_and_path()
    approle = settings.vault_approle_mount.strip("/") or "approle"
    client = hvac.Client(
        url=addr,
        token=settings.vault_token.get_secret_value(),
        verify=settings.vault_verify_value(),
        timeout=settings.vault_timeout,
    )
    where = display_url(addr)
    report = ProvisionReport()
    try:
        _policies_and_roles(
            client, registry, mount, base, approle, token_ttl, token_max_ttl, report
        )
        _secrets(client, registry, mount, base, generate, report)
        _credentials(client, approle, credentials_dir, report)
    except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
        raise SecretsUnavailableError(
            f"Vault at {where} refused VAULT_TOKEN: provisioning needs a root or provisioning "
            "token (policies, auth methods, AppRoles, secrets)"
        ) from None
    except hvac.exceptions.VaultError as exc:
        raise SecretsUnavailableError(
            f"Vault at {where} failed the provisioning ({type(exc).__name__})"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise SecretsUnavailableError(
            f"cannot reach Vault at {where} ({type(exc).__name__})"
        ) from None
    finally:
        client.adapter.close()
    return report


def _policies_and_roles(
    client: hvac.Client,
    registry: SecretRegistry,
    mount: str,
    base: str,
    approle: str,
    token_ttl: str,
    token_max_ttl: str,
    report: ProvisionReport,
) -> None:
    if f"{approle}/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method(method_type="approle", path=approle)
    for service in Consumer:
        name = layout.policy_name(service)
        client.sys.create_or_update_policy(
            name=name, policy=layout.policy_document(registry, service, mount, base)
        )
        report.policies.append(name)
        client.auth.approle.create_or_update_approle(
            role_name=name,
            token_policies=[name],
            token_ttl=token_ttl,
            token_max_ttl=token_max_ttl,
            mount_point=approle,
        )
        report.roles.append(name)


def _secrets(
    client: hvac.Client,
    registry: SecretRegistry,
    mount: str,
    base: str,
    generate: Callable[[], dict[str, str]],
    report: ProvisionReport,
) -> None:
    fresh = generate()
    # Required secrets, and optional ones a stack should have from the start.
    wanted = [entry for entry in registry if entry.required_by or entry.name in fresh]
    paths = {layout.home(entry) for entry in wanted}
    current = {path: _read(client, mount, f"{base}/{path}") for path in paths}
    legacy = _read(client, mount, base)[0] or {}

    def present(name: str, source: dict[str, Any]) -> str | None:
        entry = registry.get(name)
        candidates = entry.candidates if entry is not None else (name,)
        for key in candidates:
            if isinstance(source.get(key), str) and source[key]:
                return str(source[key])
        return None

    missing: dict[str, str] = {}
    for entry in wanted:
        if present(entry.name, current[layout.home(entry)][0] or {}) is None:
            old = present(entry.name, legacy)
            missing[entry.name] = old if old is not None else fresh[entry.name]
            if old is not None:
                report.migrated.append(entry.name)
    for pair in KEY_PAIRS:
        # Half a pair is useless: unless both halves come from the old layout together,
        # a missing half means a whole new pair.
        if not any(name in missing for name in pair):
            continue
        if all(name in report.migrated for name in pair):
            continue
        for name in pair:
            missing[name] = fresh[name]
            if name in report.migrated:
                report.migrated.remove(name)
    for path in sorted(paths):
        names = [name for name in missing if layout.home_of(name, registry) == path]
        if not names:
            continue
        data, version = current[path]
        client.secrets.kv.v2.create_or_update_secret(
            path=f"{base}/{path}",
            secret={**(data or {}), **{name: missing[name] for name in names}},
            cas=version,
            mount_point=mount,
        )
        report.written[f"{mount}/{base}/{path}"] = names


def _read(client: hvac.Client, mount: str, path: str) -> tuple[dict[str, Any] | None, int]:
    try:
        response = client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=mount, raise_on_deleted_version=True
        )
    except hvac.exceptions.InvalidPath:
        try:
            metadata = client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount)
        except hvac.exceptions.InvalidPath:
            return None, 0
        return None, int(metadata["data"].get("current_version") or 0)
    body = response["data"]
    return dict(body["data"] or {}), int(body["metadata"]["version"])


def _credentials(
    client: hvac.Client, approle: str, credentials_dir: Path, report: ProvisionReport
) -> None:
    _private_dir(credentials_dir)
    for service in Consumer:
        role = layout.policy_name(service)
        folder = credentials_dir / service.value
        _private_dir(folder)
        role_id = client.auth.approle.read_role_id(role_name=role, mount_point=approle)["data"][
            "role_id"
        ]
        _write_private(folder / "role_id", role_id)
        secret_file = folder / "secret_id"
        if _secret_id_alive(client, approle, role, secret_file):
            _write_private(secret_file, secret_file.read_text(encoding="utf-8").strip())
            report.kept_secret_ids.append(service.value)
            continue
        secret_id = client.auth.approle.generate_secret_id(role_name=role, mount_point=approle)[
            "data"
        ]["secret_id"]
        _write_private(secret_file, secret_id)
        report.new_secret_ids.append(service.value)


def _secret_id_alive(client: hvac.Client, approle: str, role: str, file: Path) -> bool:
    try:
        secret_id = file.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    if not secret_id:
        return False
    try:
        answer = client.auth.approle.read_secret_id(
            role_name=role, secret_id=secret_id, mount_point=approle
        )
    except hvac.exceptions.InvalidPath:
        return False
    # An unknown secret id is an empty answer (204), not an error.
    return isinstance(answer, dict) and bool(answer.get("data"))


def _private_dir(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Only when needed: in a container the folders are mount points on a read-only root
    # filesystem (compose's vault-init), already 0700 from the image, where chmod fails.
    if stat.S_IMODE(folder.stat().st_mode) != 0o700:
        folder.chmod(0o700)


def _write_private(file: Path, text: str) -> None:
    """Write `text` to `file` as 0600 in one step: never a moment with wider permissions."""
    handle, temporary = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
