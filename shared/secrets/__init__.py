"""The secrets layer every service resolves secrets through.

`SecretsManager.from_environment()` reads `SECRETS_PROVIDER` (`env`, `vault`/`hashicorp`,
`aws`), the `VAULT_*` / `AWS_*` connection settings and `config/managed_secrets.yaml`.
A name resolves from the configured store first, then the environment, each by primary
name then aliases in declared order; store reads are cached for
`SECRETS_CACHE_TTL_SECONDS`. `write_api_key` stores a user's key under
`PORTFOLIO_API_KEY__<encoded username>` (`api_key_secret_name`, reversible). The `*_sync` twins serve start-up
code and scripts that have no event loop. Start-up code catches `SecretsError`.

Vault's `per-service` layout (`VAULT_SECRET_LAYOUT`, `shared.secrets.layout`) keeps each
secret where only its readers may read it; `SecretsManager(service=...)` reads that
service's paths, signing in with `VAULT_TOKEN` or an AppRole. `shared.secrets.provision`
writes the policies, AppRoles, missing secrets and each service's credentials.
"""

from shared.secrets.config import SecretsSettings
from shared.secrets.errors import (
    InvalidSecretError,
    MissingSecretError,
    RegistryError,
    SecretsConfigError,
    SecretsError,
    SecretsUnavailableError,
)
from shared.secrets.layout import API_KEY_SECRET_PREFIX
from shared.secrets.manager import (
    ResolvedSecret,
    SecretsManager,
    api_key_secret_name,
    api_key_username,
)
from shared.secrets.registry import Consumer, ManagedSecret, SecretRegistry

__all__ = [
    "API_KEY_SECRET_PREFIX",
    "Consumer",
    "InvalidSecretError",
    "ManagedSecret",
    "MissingSecretError",
    "RegistryError",
    "ResolvedSecret",
    "SecretRegistry",
    "SecretsConfigError",
    "SecretsError",
    "SecretsManager",
    "SecretsSettings",
    "SecretsUnavailableError",
    "api_key_secret_name",
    "api_key_username",
]
