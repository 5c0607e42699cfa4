"""HashiCorp Vault KV v2 store: one secret at `VAULT_SECRET_PATH`; hvac runs in a thread."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio.to_thread
import hvac
import hvac.exceptions
import requests.exceptions

from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsConfigError, SecretsUnavailableError
from shared.secrets.stores.base import display_url, missing_settings, string_values

logger = logging.getLogger("shared.secrets")

T = TypeVar("T")

# How often a write-back retries when someone else wrote the Vault path in between.
_CAS_ATTEMPTS = 5


class VaultStore:
    """One KV v2 secret (`VAULT_SECRET_PATH` = `<mount>/<path>`); hvac runs in a thread."""

    def __init__(self, settings: SecretsSettings) -> None:
        addr, token = settings.vault_addr, settings.vault_token
        if not addr or not token:
            raise missing_settings("vault", (("VAULT_ADDR", addr), ("VAULT_TOKEN", token)))
        if urlsplit(addr).scheme not in ("http", "https"):
            raise SecretsConfigError(
                "VAULT_ADDR must be an http:// or https:// address, e.g. https://vault.example:8200"
            )
        self._mount, self._path = settings.vault_mount_and_path()
        self._verify = settings.vault_verify_value()
        if self._verify is False:
            logger.warning("VAULT_VERIFY=false: the TLS certificate of Vault is not verified")
        self._timeout = settings.vault_timeout
        self._addr = display_url(addr)
        self.location = f"vault:{self._mount}/{self._path}"
        self._client = hvac.Client(
            url=addr,
            token=token.get_secret_value(),
            verify=self._verify,
            timeout=self._timeout,
        )

    async def read(self) -> Mapping[str, str]:
        """Return the latest version's data."""
        data, _ = await self._call(self._read_current, "read")
        if data is None:
            raise SecretsUnavailableError(
                f"Vault at {self._addr} has no secret at {self._mount}/{self._path} (404); "
                "VAULT_SECRET_PATH must name an existing <mount>/<path> on a KV v2 mount"
            )
        return string_values(data, self.location)

    async def write(self, name: str, value: str) -> str:
        """Write a new version with `name` set, every other key kept (check-and-set)."""
        for _ in range(_CAS_ATTEMPTS):
            data, version = await self._call(self._read_current, "read")
            merged = {**(data or {}), name: value}

            def put(merged: dict[str, Any] = merged, version: int = version) -> Any:
                return self._client.secrets.kv.v2.create_or_update_secret(
                    path=self._path, secret=merged, cas=version, mount_point=self._mount
                )

            try:
                response = await self._call(put, "write", cas_conflict_ok=True)
            except _CasConflict:
                continue  # someone wrote in between: read again, never overwrite their keys
            new_version = (response.get("data") or {}).get("version", "?")
            return f"{self.location} key {name} (version {new_version})"
        raise SecretsUnavailableError(
            f"Vault at {self._addr}: {self.location} kept changing during the write of {name}; "
            f"gave up after {_CAS_ATTEMPTS} check-and-set attempts"
        )

    async def aclose(self) -> None:
        """Close hvac's HTTP session."""
        self._client.adapter.close()

    def _read_current(self) -> tuple[dict[str, Any] | None, int]:
        """Return (data, current version); data is None when absent or its latest is deleted."""
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=self._path, mount_point=self._mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            # A deleted latest version still counts for check-and-set; only the
            # metadata knows its number.
            try:
                metadata = self._client.secrets.kv.v2.read_secret_metadata(
                    path=self._path, mount_point=self._mount
                )
            except hvac.exceptions.InvalidPath:
                return None, 0
            return None, int((metadata.get("data") or {}).get("current_version") or 0)
        body = response.get("data") or {}
        data = body.get("data")
        version = int((body.get("metadata") or {}).get("version") or 0)
        if not isinstance(data, dict):
            raise SecretsUnavailableError(
                f"Vault at {self._addr}: {self.location} did not answer KV v2 data; "
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
        self, work: Callable[[], T], action: str, *, cas_conflict_ok: bool = False
    ) -> T:
        try:
            return await anyio.to_thread.run_sync(work)
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            denied = await self._denied_message(action)
            raise SecretsUnavailableError(denied) from None
        except hvac.exceptions.InvalidRequest as exc:
            if cas_conflict_ok and "check-and-set" in str(exc):
                raise _CasConflict from None
            raise SecretsUnavailableError(
                f"Vault at {self._addr} refused the {action} of {self.location} (400)"
            ) from None
        except hvac.exceptions.InvalidPath:
            raise SecretsUnavailableError(
                f"Vault at {self._addr} has no KV v2 mount for {self.location} (404)"
            ) from None
        except hvac.exceptions.VaultError as exc:
            raise SecretsUnavailableError(
                f"Vault at {self._addr} failed the {action} of {self.location} "
                f"({type(exc).__name__})"
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

    async def _denied_message(self, action: str) -> str:
        valid = await anyio.to_thread.run_sync(self._token_is_valid)
        if valid is False:
            return f"Vault at {self._addr} rejected VAULT_TOKEN (permission denied)"
        if valid is None:
            return (
                f"Vault at {self._addr} denied the {action} of {self.location} (permission denied)"
            )
        return f"VAULT_TOKEN may not {action} {self.location} at {self._addr} (permission denied)"


class _CasConflict(Exception):
    """The KV v2 version moved between our read and our write."""
