"""AWS Secrets Manager store: one secret (`AWS_SECRET_NAME`) whose string is a JSON object."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any

import aioboto3
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
from shared.secrets.stores.base import display_url, missing_settings, string_values

logger = logging.getLogger("shared.secrets")

CURRENT = "AWSCURRENT"
# How often a write-back retries when someone else put a version in between.
_CAS_ATTEMPTS = 8


class AwsStore:
    """One Secrets Manager secret (`AWS_SECRET_NAME`) whose string is a JSON object."""

    def __init__(self, settings: SecretsSettings) -> None:
        secret_name, region = settings.aws_secret_name, settings.aws_region
        if not secret_name or not region:
            raise missing_settings(
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
        return string_values(document, self.location)

    async def write(self, name: str, value: str) -> str:
        """Put a new version with `name` set and every other entry kept (check-and-set).

        Secrets Manager has no conditional put, but moving the `AWSCURRENT` stage is one:
        the new version is put under a stage of its own, and `AWSCURRENT` moves to it only
        from the version we read. When someone put a version in between (another
        rotation, an operator's new key), the move is refused and we merge again on top
        of theirs, so a concurrent change is never undone.
        """
        client = await self._get_client()
        for _ in range(_CAS_ATTEMPTS):
            document, current = await self._fetch_current()
            merged = json.dumps({**(document or {}), name: value})
            try:
                if document is None:
                    response = await client.create_secret(
                        Name=self._secret_name, SecretString=merged
                    )
                    return self._written(name, response.get("VersionId"))
                version = await self._put_and_promote(client, merged, current)
            except _Conflict:
                continue  # someone put a version in between: read again, merge on theirs
            except ClientError as exc:
                if _error_code(exc) == "ResourceExistsException":
                    continue  # created meanwhile: read it and merge
                raise SecretsUnavailableError(self._explain(exc, "write")) from None
            except BotoCoreError as exc:
                raise SecretsUnavailableError(self._explain(exc, "write")) from None
            return self._written(name, version)
        raise SecretsUnavailableError(
            f"AWS secret {self._secret_name} kept changing during the write of {name}; "
            f"gave up after {_CAS_ATTEMPTS} check-and-set attempts"
        )

    async def _put_and_promote(self, client: Any, text: str, current: str | None) -> str:
        """Put `text` as a staged version and make it current only if `current` still is."""
        version = str(uuid.uuid4())
        stage = f"LCT-WRITE-{version}"
        await client.put_secret_value(
            SecretId=self._secret_name,
            SecretString=text,
            ClientRequestToken=version,
            VersionStages=[stage],
        )
        try:
            await client.update_secret_version_stage(
                SecretId=self._secret_name,
                VersionStage=CURRENT,
                MoveToVersionId=version,
                RemoveFromVersionId=current,
            )
        except ClientError as exc:
            # Refused because `current` no longer holds AWSCURRENT.
            if _error_code(exc) == "InvalidParameterException":
                raise _Conflict from None
            raise
        finally:
            # The private stage only marked our version while it was pending; a version
            # left without any stage is dropped by Secrets Manager in time.
            try:
                await client.update_secret_version_stage(
                    SecretId=self._secret_name, VersionStage=stage, RemoveFromVersionId=version
                )
            except (ClientError, BotoCoreError) as exc:
                logger.warning(
                    "%s: could not remove the stage of a pending write (%s)",
                    self.location,
                    type(exc).__name__,
                )
        return version

    def _written(self, name: str, version: object) -> str:
        return f"{self.location} key {name} (version {version or '?'})"

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
        document, _ = await self._fetch_current()
        return document

    async def _fetch_current(self) -> tuple[dict[str, Any] | None, str | None]:
        """Return the current JSON object and its version id; (None, None) when absent."""
        client = await self._get_client()
        try:
            response = await client.get_secret_value(
                SecretId=self._secret_name, VersionStage=CURRENT
            )
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None, None
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
        return document, response.get("VersionId")

    def _explain(self, exc: Exception, action: str) -> str:
        where = f"AWS Secrets Manager ({self._region}"
        where += f", {display_url(self._endpoint_url)})" if self._endpoint_url else ")"
        if isinstance(exc, ClientError):
            code = _error_code(exc) or "error"
            return f"{where} refused the {action} of {self._secret_name} ({code})"
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return f"{where}: no usable AWS credentials (set AWS_PROFILE or the access key pair)"
        if isinstance(exc, ConnectTimeoutError | ReadTimeoutError):
            return f"{where} did not answer the {action} of {self._secret_name} in time"
        if isinstance(exc, EndpointConnectionError | ConnectionClosedError):
            return f"cannot reach {where}"
        return f"{where} failed the {action} of {self._secret_name} ({type(exc).__name__})"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Conflict(Exception):
    """AWSCURRENT moved between our read and our write."""
