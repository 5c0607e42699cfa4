"""The interface of a secrets store, and the helpers the stores share."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

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


class Document(dict[str, str]):
    """A store's name → value, with where each came from when it reads several places."""

    def __init__(self, values: Mapping[str, str], origins: Mapping[str, str]) -> None:
        super().__init__(values)
        self.origins = dict(origins)


def missing_settings(
    provider: str, pairs: tuple[tuple[str, object], ...], *, alternative: str = ""
) -> SecretsConfigError:
    """Name every variable `provider` needs, and which of those `pairs` left unset."""
    needed = ", ".join(variable for variable, _ in pairs)
    if alternative:
        needed += f" ({alternative})"
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
    """Keep the entries whose value is a string; log (never show) each one dropped."""
    values: dict[str, str] = {}
    for key, value in document.items():
        if isinstance(value, str):
            values[key] = value
        else:
            logger.warning("%s: entry %s is not a string; ignored", location, key)
    return values
