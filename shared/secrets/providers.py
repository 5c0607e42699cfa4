"""Secret stores: HashiCorp Vault KV v2 and AWS Secrets Manager (`env` has no store)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aioboto3
import anyio.to_thread
import hvac
import hvac.exceptions
import requests.exceptions
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)

from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsConfigError, SecretsUnavailableError

logger = logging.getLogger("shared.secrets")

T = TypeVar("T")

# How often a write-back retries when someone else wrote the Vault path in between.
_CAS_ATTEMPTS = 5


class SecretStore(Protocol):
    """A managed store holding one document of name → value."""

    location: str

    async def read(self) -> Mapping[str, str]:
        """Return every name → value of the document; raise `SecretsUnavailableError`."""
        ...

    async def write(self, name: str, value: str) -> str:
        """Set one name, keeping every other; return where it went (never the value)."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


def build_store(settings: SecretsSettings) -> SecretStore | None:
    """Return the store `SECRETS_PROVIDER` names; None for `env`."""
    if settings.secrets_provider == "vault":
        return VaultStore(settings)
    if settings.secrets_provider == "aws":
        return AwsStore(settings)
    return None


def _missing_settings(provider: str, pairs: tuple[tuple[str, object], ...]) -> SecretsConfigError:
    needed = ", ".join(variable for variable, _ in pairs)
    missing = ", ".join(variable for variable, value in pairs if not value)
    return SecretsConfigError(f"SECRETS_PROVIDER={provider} needs {needed}; not set: {missing}")


def _display_url(url: str) -> str:
    """Drop any user:password part so an address can go into a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def _string_values(document: Mapping[str, Any], location: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, str):
            values[key] = value
        else:
            logger.warning("%s: entry %s is not a string; ignored", location, key)
    return values


class VaultStore:
    """One KV v2 secret (`VAULT_SECRET_PATH` = `<mount>/<path>`); hvac runs in a thread."""

    def __init__(self, settings: SecretsSettings) -> None:
        addr, token = settings.vault_addr, settings.vault_token
        if not addr or not token:
            raise _missing_settings("vault", (("VAULT_ADDR", addr), ("VAULT_TOKEN", token)))
        if urlsplit(addr).scheme not in ("http", "https"):
            raise SecretsConfigError(
                "VAULT_ADDR must be an http:// or https:// address, e.g. https://vault.example:8200"
            )
        self._mount, self._path = settings.vault_mount_and_path()
        self._verify = settings.vault_verify_value()
        self._timeout = settings.vault_timeout
        self._addr = _display_url(addr)
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
        return _string_values(data, self.location)

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
        """Return (data, version); (None, 0) when the path does not exist yet."""
        try:
            response = self._client.secrets.kv.v2.read_secret_version(
                path=self._path, mount_point=self._mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None, 0
        body = response.get("data") or {}
        data = body.get("data")
        version = int((body.get("metadata") or {}).get("version") or 0)
        if not isinstance(data, dict):
            raise SecretsUnavailableError(
                f"Vault at {self._addr}: {self.location} did not answer KV v2 data; "
                "is the mount a KV version 2 engine?"
            )
        return data, version

    def _token_is_valid(self) -> bool:
        try:
            self._client.auth.token.lookup_self()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            return False
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
        try:
            valid = await anyio.to_thread.run_sync(self._token_is_valid)
        except (hvac.exceptions.VaultError, requests.exceptions.RequestException):
            valid = False
        if not valid:
            return f"Vault at {self._addr} rejected VAULT_TOKEN (permission denied)"
        return f"VAULT_TOKEN may not {action} {self.location} at {self._addr} (permission denied)"


class _CasConflict(Exception):
    """The KV v2 version moved between our read and our write."""


class AwsStore:
    """One Secrets Manager secret (`AWS_SECRET_NAME`) whose string is a JSON object."""

    def __init__(self, settings: SecretsSettings) -> None:
        secret_name, region = settings.aws_secret_name, settings.aws_region
        if not secret_name or not region:
            raise _missing_settings(
                "aws", (("AWS_SECRET_NAME", secret_name), ("AWS_REGION", region))
            )
        self._secret_name = secret_name
        self._region = region
        self._endpoint_url = settings.aws_endpoint_url or None
        self.location = f"aws:{self._secret_name}"
        try:
            self._session = aioboto3.Session(
                profile_name=settings.aws_profile or None, region_name=self._region
            )
        except ProfileNotFound:
            raise SecretsConfigError(
                f"AWS_PROFILE={settings.aws_profile} is not a profile of the AWS config "
                "or credentials file"
            ) from None
        self._config = AioConfig(
            connect_timeout=settings.aws_timeout,
            read_timeout=settings.aws_timeout,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        self._stack: AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def read(self) -> Mapping[str, str]:
        """Return the string entries of the secret's JSON object."""
        document = await self._fetch()
        if document is None:
            raise SecretsUnavailableError(
                f"AWS secret {self._secret_name} does not exist in {self._region}"
            )
        return _string_values(document, self.location)

    async def write(self, name: str, value: str) -> str:
        """Put a new version with `name` set and every other entry kept (create if absent)."""
        # Secrets Manager has no check-and-set: re-reading right before the put keeps
        # the window in which a concurrent writer's key could be lost small.
        document = await self._fetch()
        client = await self._get_client()
        try:
            if document is None:
                response = await client.create_secret(
                    Name=self._secret_name, SecretString=json.dumps({name: value})
                )
            else:
                response = await client.put_secret_value(
                    SecretId=self._secret_name, SecretString=json.dumps({**document, name: value})
                )
        except (ClientError, BotoCoreError) as exc:
            raise SecretsUnavailableError(self._explain(exc, "write")) from None
        return f"{self.location} key {name} (version {response.get('VersionId', '?')})"

    async def aclose(self) -> None:
        """Close the Secrets Manager client."""
        if self._stack is not None:
            stack, self._stack, self._client = self._stack, None, None
            await stack.aclose()

    async def _get_client(self) -> Any:
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                try:
                    self._client = await stack.enter_async_context(
                        self._session.client(
                            "secretsmanager",
                            region_name=self._region,
                            endpoint_url=self._endpoint_url,
                            config=self._config,
                        )
                    )
                except BotoCoreError as exc:
                    await stack.aclose()
                    raise SecretsUnavailableError(self._explain(exc, "open")) from None
                self._stack = stack
            return self._client

    async def _fetch(self) -> dict[str, Any] | None:
        """Return the secret's JSON object; None when the secret does not exist."""
        client = await self._get_client()
        try:
            response = await client.get_secret_value(SecretId=self._secret_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return None
            raise SecretsUnavailableError(self._explain(exc, "read")) from None
        except BotoCoreError as exc:
            raise SecretsUnavailableError(self._explain(exc, "read")) from None
        text = response.get("SecretString")
        if text is None:
            raise SecretsUnavailableError(
                f"AWS secret {self._secret_name} has no SecretString; it must be a JSON object"
            )
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise SecretsUnavailableError(
                f"AWS secret {self._secret_name} is not a JSON object of name → value"
            )
        return document

    def _explain(self, exc: Exception, action: str) -> str:
        where = f"AWS Secrets Manager ({self._region}"
        where += f", {_display_url(self._endpoint_url)})" if self._endpoint_url else ")"
        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "error")
            return f"{where} refused the {action} of {self._secret_name} ({code})"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return f"{where}: no usable AWS credentials (set AWS_PROFILE or the access key pair)"
        if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            return f"{where} did not answer the {action} of {self._secret_name} in time"
        if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
            return f"cannot reach {where}"
        return f"{where} failed the {action} of {self._secret_name} ({type(exc).__name__})"
