"""Secret stores: HashiCorp Vault KV v2 and AWS Secrets Manager (`env` has no store)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from shared.secrets.config import SecretsSettings
from shared.secrets.errors import SecretsConfigError


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
    if settings.secrets_provider == "env":
        return None
    raise SecretsConfigError(f"SECRETS_PROVIDER={settings.secrets_provider} is not wired yet")
