"""HashiCorp Vault (or OpenBao) KV v2 store; hvac runs in a thread.

`VAULT_SECRET_LAYOUT=single` (the default) keeps every secret in one KV v2 secret at
`VAULT_SECRET_PATH`. `per-service` keeps them in several under it (shared/secrets/layout.py):
a service reads the paths its policy allows, a write goes to the home path of its name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import anyio.to_thread
import hvac
import hvac.exceptions
import requests.exceptions

from shared.secrets import layout
from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsUnavailableError
from shared.secrets.registry import Consumer, SecretRegistry
from shared.secrets.stores.base import Document, display_url, missing_settings, string_values
from shared.secrets.stores.vault_auth import VaultAuth

logger = logging.getLogger("shared.secrets")

T = TypeVar("T")

# How often a write-back retries when someone else wrote the Vault path in between.
_CAS_ATTEMPTS = 8


class VaultStore:
    """KV v2 secrets under `VAULT_SECRET_PATH` (`<mount>/<path>`); hvac runs in a thread."""

    def __init__(
        self,
        settings: SecretsSettings,
        *,
        registry: SecretRegistry | None = None,
        service: Consumer | None = None,
    ) -> None:
        addr = settings.vault_addr
        if not addr or not (
            settings.vault_token or settings.vault_role_id or settings.vault_role_id_file
        ):
            raise missing_settings(
                "vault",
                (("VAULT_ADDR", addr), ("VAULT_TOKEN", settings.vault_token)),
                alternative="or VAULT_ROLE_ID with VAULT_SECRET_ID or VAULT_SECRET_ID_FILE",
            )
        addr = settings.vault_address()
        self._mount, self._base = settings.vault_mount_and_path()
        self._verify = settings.vault_verify_value()
        if self._verify is False:
            logger.warning("VAULT_VERIFY=false: the TLS certificate of Vault is not verified")
        self._timeout = settings.vault_timeout
        self._addr = display_url(addr)
        self._registry = registry if registry is not None else SecretRegistry.load()
        self._service = service
        self._per_service = (
            settings.vault_secret_layout == "per-service"  # noqa: S105  # nosec B105 - a layout name
        )
        self.location = f"vault:{self._mount}/{self._base}"
        self._client = hvac.Client(url=addr, verify=self._verify, timeout=self._timeout)
        self.auth = VaultAuth(self._client, settings, where=self._addr)

    def _paths(self) -> list[str]:
        if not self._per_service:
            return [self._base]
        return [
            f"{self._base}/{path}" for path in layout.readable_paths(self._registry, self._service)
        ]

    def _target(self, name: str) -> str:
        if not self._per_service:
            return self._base
        return f"{self._base}/{layout.home_of(name, self._registry)}"

    async def read(self) -> Mapping[str, str]:
        """Return the latest data of every path this service reads, merged."""
        merged: dict[str, Any] = {}
        origins: dict[str, str] = {}
        found = False
        for path in self._paths():
            data, _ = await self._call(partial(self._read_current, path), "read", path)
            if data is not None:
                found = True
                merged.update(data)
                origins.update(dict.fromkeys(data, f"vault:{self._mount}/{path}"))
        if not found:
            where = ", ".join(f"{self._mount}/{path}" for path in self._paths())
            raise SecretsUnavailableError(
                f"Vault at {self._addr} has no secret at {where} (404); "
                "VAULT_SECRET_PATH must name an existing <mount>/<path> on a KV v2 mount"
            )
        return Document(string_values(merged, self.location), origins)

    async def write(self, name: str, value: str) -> str:
        """Write a new version with `name` set, every other key kept (check-and-set)."""
        path = self._target(name)
        where = f"vault:{self._mount}/{path}"
        for _ in range(_CAS_ATTEMPTS):
            data, version = await self._call(lambda: self._read_for_write(path), "read", path)
            merged = {**(data or {}), name: value}

            def put(merged: dict[str, Any] = merged, version: int = version) -> Any:
                return self._client.secrets.kv.v2.create_or_update_secret(
                    path=path, secret=merged, cas=version, mount_point=self._mount
                )

            try:
                response = await self._call(put, "write", path, cas_conflict_ok=True)
            except _CasConflict:
                continue  # someone wrote in between: read again, never overwrite their keys
            new_version = (response.get("data") or {}).get("version", "?")
            return f"{where} key {name} (version {new_version})"
        raise SecretsUnavailableError(
            f"Vault at {self._addr}: {where} kept changing during the write of {name}; "
            f"gave up after {_CAS_ATTEMPTS} check-and-set attempts"
        )

    async def aclose(self) -> None:
        """Close hvac's HTTP session."""
        self._client.adapter.close()

    def _read_current(self, path: str) -> tuple[dict[str, Any] | None, int]:
        """Return (data, version) of the latest version; data None when absent or deleted."""
        self.auth.ensure()
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=path, mount_point=self._mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None, 0
        return self._data_of(response, path)

    def _read_for_write(self, path: str) -> tuple[dict[str, Any] | None, int]:
        """Return the data to merge into and the version to check-and-set against.

        When the latest version was soft-deleted, the merge starts from the last live
        version: starting from nothing would write a version holding one key and leave
        every service without its secrets. With no live version left, the write is refused.
        """
        data, version = self._read_current(path)
        if data is not None:
            return data, version
        try:
            metadata = self._client.secrets.kv.v2.read_secret_metadata(
                path=path, mount_point=self._mount
            )
        except hvac.exceptions.InvalidPath:
            return None, 0  # a new path: created by the write
        body = metadata.get("data") or {}
        current = int(body.get("current_version") or 0)
        versions = body.get("versions") or {}
        live = [
            int(number)
            for number, info in versions.items()
            if not info.get("deletion_time") and not info.get("destroyed")
        ]
        if not live:
            raise SecretsUnavailableError(
                f"Vault at {self._addr}: every version of {self._mount}/{path} is deleted or "
                "destroyed; refusing to write a version that would hold one key only "
                f"(restore one with `bao kv undelete -versions=N {self._mount}/{path}`)"
            )
        last = max(live)
        response = self._client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self._mount, version=last, raise_on_deleted_version=True
        )
        data, _ = self._data_of(response, path)
        logger.warning(
            "vault:%s/%s: the latest version %d is deleted; writing on top of version %d",
            self._mount,
            path,
            current,
            last,
        )
        return data, current

    def _data_of(self, response: Any, path: str) -> tuple[dict[str, Any], int]:
        body = response.get("data") or {}
        data = body.get("data")
        version = int((body.get("metadata") or {}).get("version") or 0)
        if not isinstance(data, dict):
            raise SecretsUnavailableError(
                f"Vault at {self._addr}: vault:{self._mount}/{path} did not answer KV v2 data; "
                "is the mount a KV version 2 engine?"
            )
        return data, version

    def _token_is_valid(self) -> bool | None:
        """Ask Vault about our own token: True, False (rejected) or None (no answer)."""
        try:
            self._client.auth.token.lookup_self()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            return False
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
            return None
        return True

    async def _call(
        self,
        work: Callable[[], T],
        action: str,
        path: str,
        *,
        cas_conflict_ok: bool = False,
    ) -> T:
        where = f"vault:{self._mount}/{path}"
        for attempt in (1, 2):
            try:
                return await anyio.to_thread.run_sync(work)
            except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
                valid = await anyio.to_thread.run_sync(self._token_is_valid)
                # An AppRole token Vault no longer honours (revoked, expired while we were
                # idle): log in again once. A valid token that is denied stays denied.
                if attempt == 1 and valid is False and await self._recover():
                    continue
                raise SecretsUnavailableError(self._denied_message(action, where, valid)) from None
            except hvac.exceptions.InvalidRequest as exc:
                if cas_conflict_ok and "check-and-set" in str(exc):
                    raise _CasConflict from None
                raise SecretsUnavailableError(
                    f"Vault at {self._addr} refused the {action} of {where} (400)"
                ) from None
            except hvac.exceptions.InvalidPath:
                raise SecretsUnavailableError(
                    f"Vault at {self._addr} has no KV v2 mount for {where} (404)"
                ) from None
            except hvac.exceptions.VaultError as exc:
                raise SecretsUnavailableError(
                    f"Vault at {self._addr} failed the {action} of {where} ({type(exc).__name__})"
                ) from None
            except requests.exceptions.SSLError:
                raise SecretsUnavailableError(
                    f"TLS verification of Vault at {self._addr} failed "
                    f"(VAULT_VERIFY={self._verify}); check the CA bundle"
                ) from None
            except requests.exceptions.Timeout:
                raise SecretsUnavailableError(
                    f"Vault at {self._addr} did not answer within VAULT_TIMEOUT={self._timeout:g} s"
                ) from None
            except requests.exceptions.RequestException as exc:
                raise SecretsUnavailableError(
                    f"cannot reach Vault at {self._addr} ({type(exc).__name__})"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _recover(self) -> bool:
        return await anyio.to_thread.run_sync(self.auth.recover)

    def _denied_message(self, action: str, where: str, valid: bool | None) -> str:
        credential = self.auth.credential
        if valid is False:
            return f"Vault at {self._addr} rejected {credential} (permission denied)"
        if valid is None:
            return f"Vault at {self._addr} denied the {action} of {where} (permission denied)"
        return f"{credential} may not {action} {where} at {self._addr} (permission denied)"


class _CasConflict(Exception):
    """The KV v2 version moved between our read and our write."""
