"""Where secrets are stored: one document of name → value behind `SecretStore`.

`SECRETS_PROVIDER=env` has no store: values come from the environment only, which is
also every store's fallback in `SecretsManager`. `vault` is `VaultStore` (a KV v2
secret), `aws` is `AwsStore` (a Secrets Manager secret holding a JSON object).
"""

from __future__ import annotations

from shared.secrets.config import SecretsSettings
from shared.secrets.registry import Consumer, SecretRegistry
from shared.secrets.stores.base import SecretStore

__all__ = ["SecretStore", "create_store"]


def create_store(
    settings: SecretsSettings,
    *,
    registry: SecretRegistry | None = None,
    service: Consumer | None = None,
) -> SecretStore | None:
    """Build the store `SECRETS_PROVIDER` names; None for `env`.

    `service` (default `SECRETS_SERVICE`) picks the paths read in Vault's per-service layout.
    """
    # Imported here: a process on the env provider never loads hvac or aioboto3.
    if settings.secrets_provider == "vault":
        from shared.secrets.stores.vault import VaultStore

        return VaultStore(
            settings,
            registry=registry,
            service=service if service is not None else settings.secrets_service,
        )
    if settings.secrets_provider == "aws":
        from shared.secrets.stores.aws import AwsStore

        return AwsStore(settings)
    return None
