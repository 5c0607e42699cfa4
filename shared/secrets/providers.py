"""Where secrets are stored: the `SecretStore` protocol and the factory of the configured one.

`env` has no store (values come from the environment only); `vault` is `VaultStore`
(shared/secrets/vault.py), `aws` is `AwsStore` (shared/secrets/aws.py). Their client
libraries are imported only when that provider is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsConfigError

logger = logging.getLogger("shared.secrets")


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
        from shared.secrets.vault import VaultStore

        return VaultStore(settings)
    if settings.secrets_provider == "aws":
        from shared.secrets.aws import AwsStore

        return AwsStore(settings)
    return None


def missing_settings(provider: str, pairs: tuple[tuple[str, object], ...]) -> SecretsConfigError:
    needed = ", ".join(variable for variable, _ in pairs)
    missing = ", ".join(variable for variable, value in pairs if not value)
    return SecretsConfigError(f"SECRETS_PROVIDER={provider} needs {needed}; not set: {missing}")


def display_url(url: str) -> str:
    """Drop any user:password part so an address can go into a message."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


def string_values(document: Mapping[str, Any], location: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, str):
            values[key] = value
        else:
            logger.warning("%s: entry %s is not a string; ignored", location, key)
    return values
