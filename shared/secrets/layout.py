"""Where each secret lives in Vault's per-service layout, and who may read or write it.

Under `VAULT_SECRET_PATH` (e.g. `secret/legacycointrader`) every managed secret has one home,
derived from `config/managed_secrets.yaml`, so that a service's credentials reach exactly
the secrets it reads:

- `public` entries (public keys) live in `shared`, which every service may read;
- an entry read by one service lives in that service's path (`frontend`, `gateway`, ...);
- an entry read by several lives in the path of that group, named by its members in
  `Consumer` order (`IDENTITY_SERVICE_TOKEN`: `portfolio-gateway`), readable by them alone;
- an entry nobody reads at run time lives in `operator`, which no service may read;
- the users' API keys (`PORTFOLIO_API_KEY__...`) live in `api-keys`, which only the
  portfolio may read and write.

The policies of `policy_document` grant exactly that: read on the paths above, and for the
portfolio create/update on `api-keys` alone.
"""

from __future__ import annotations

from shared.secrets.registry import Consumer, ManagedSecret, SecretRegistry

SHARED = "shared"
OPERATOR = "operator"
API_KEYS = "api-keys"
# A name prefix, not a credential.
API_KEY_SECRET_PREFIX = "PORTFOLIO_API_KEY__"  # noqa: S105  # nosec B105
# The service that writes users' API keys back.
API_KEY_WRITER = Consumer.PORTFOLIO


def home(entry: ManagedSecret) -> str:
    """Return the path (under `VAULT_SECRET_PATH`) that holds `entry`."""
    if entry.public:
        return SHARED
    readers = entry.readers
    if not readers:
        return OPERATOR
    return "-".join(readers)


def home_of(name: str, registry: SecretRegistry) -> str:
    """Return the path that holds the secret stored as `name` (a primary name or an alias)."""
    if name.startswith(API_KEY_SECRET_PREFIX):
        return API_KEYS
    for entry in registry:
        if name in entry.candidates:
            return home(entry)
    return OPERATOR


def readable_paths(registry: SecretRegistry, service: Consumer | None) -> list[str]:
    """Return the paths `service` reads, in merge order; every path when `service` is None."""
    paths = [SHARED]
    for entry in registry:
        path = home(entry)
        if path in paths:
            continue
        if service is None or service in entry.readers:
            paths.append(path)
    if service is None:
        paths.extend(extra for extra in (OPERATOR, API_KEYS) if extra not in paths)
    elif service is API_KEY_WRITER:
        paths.append(API_KEYS)
    return paths


def writable_paths(service: Consumer) -> list[str]:
    """Return the paths `service` may write (the portfolio: the API keys; others: none)."""
    return [API_KEYS] if service is API_KEY_WRITER else []


def policy_name(service: Consumer) -> str:
    """Return the name of `service`'s Vault policy (and of its AppRole)."""
    return f"legacycointrader-{service.value}"


def policy_document(registry: SecretRegistry, service: Consumer, mount: str, base: str) -> str:
    """Return the HCL policy granting `service` exactly its paths under `<mount>/<base>`."""
    blocks = []
    writable = writable_paths(service)
    for path in readable_paths(registry, service):
        capabilities = '"read"' if path not in writable else '"create", "update", "read"'
        blocks.append(
            f'path "{mount}/data/{base}/{path}" {{\n  capabilities = [{capabilities}]\n}}'
        )
        if path in writable:
            # A write-back checks the version it merged (check-and-set), also after a
            # soft delete, which only the metadata reveals.
            blocks.append(
                f'path "{mount}/metadata/{base}/{path}" {{\n  capabilities = ["read"]\n}}'
            )
    return "\n\n".join(blocks) + "\n"
