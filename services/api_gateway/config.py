"""Gateway settings (environment) and the secrets it needs at start-up."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.api_gateway.errors import StartupError
from shared.errors import settings_problems
from shared.metrics import SCRAPE_TOKEN_SECRET
from shared.roles import RoleList, Service, parse_role_list
from shared.secrets import SecretsError, SecretsManager
from shared.secrets.watch import read_fresh

Seconds = Annotated[float, Field(gt=0)]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Settings(BaseSettings):
    """Everything the gateway reads from the environment; field names are the variable names."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    gateway_token_ttl_seconds: Annotated[int, Field(ge=1)] = 900
    gateway_issuer: str = "legacycointrader-gateway"
    gateway_audience: str = "legacycointrader-api"
    gateway_token_cache_size: Annotated[int, Field(ge=0)] = 10_000
    gateway_assertion_ttl_seconds: Annotated[int, Field(ge=2)] = 60

    portfolio_service_url: str = "http://127.0.0.1:8003"
    trading_service_url: str = "http://127.0.0.1:8101"
    market_service_url: str = "http://127.0.0.1:8102"
    strategy_service_url: str = "http://127.0.0.1:8103"
    token_service_url: str = "http://127.0.0.1:8104"  # noqa: S105 - a URL, not a secret
    execution_service_url: str = "http://127.0.0.1:8105"
    monitoring_service_url: str = "http://127.0.0.1:8106"

    gateway_upstream_timeout_seconds: Seconds = 30.0
    gateway_upstream_connect_timeout_seconds: Seconds = 2.0
    gateway_upstream_max_connections: Annotated[int, Field(ge=1)] = 256
    gateway_identity_timeout_seconds: Seconds = 10.0
    # How often the identity service's change feed is polled; 0 turns the sync off.
    gateway_identity_sync_seconds: Annotated[float, Field(ge=0)] = 5.0
    # In-process state only (no GATEWAY_STATE_URL): how often API-key usage counts are saved
    # in the identity store, which also keeps logout revocations; 0 turns both off.
    gateway_state_journal_seconds: Annotated[float, Field(ge=0)] = 5.0

    gateway_api_key_cache_seconds: Annotated[float, Field(ge=0)] = 30.0
    gateway_login_max_attempts: Annotated[int, Field(ge=1)] = 5
    gateway_login_max_attempts_per_address: Annotated[int, Field(ge=1)] = 20
    gateway_login_window_seconds: Seconds = 300.0
    # Roles whose holders must sign in with a second factor (the identity service's policy,
    # read here too: a token for such a role is never issued on a password alone).
    portfolio_mfa_required_roles: RoleList = "admin"

    gateway_access_log: str = "stdout"
    gateway_trusted_proxies: Annotated[tuple[IpNetwork, ...], NoDecode] = ()
    gateway_state_url: SecretStr | None = None  # may hold the Redis password
    gateway_state_prefix: Annotated[str, Field(min_length=1, max_length=64)] = "lct:gateway:"
    gateway_state_timeout_seconds: Seconds = 1.0
    # Longest a request waits for one Redis call before it uses this replica's memory; Redis
    # then counts as slow (degraded) until it answers within this again.
    gateway_state_budget_seconds: Seconds = 0.25

    def mfa_roles(self) -> frozenset[str]:
        """Return the roles whose holders must use a second factor."""
        return parse_role_list(self.portfolio_mfa_required_roles)

    @field_validator("gateway_trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(
                ipaddress.ip_network(part.strip(), strict=False)
                for part in value.split(",")
                if part.strip()
            )
        return value

    @field_validator(
        "portfolio_service_url",
        "trading_service_url",
        "market_service_url",
        "strategy_service_url",
        "token_service_url",
        "execution_service_url",
        "monitoring_service_url",
    )
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    def service_url(self, service: Service) -> str:
        """Return the base URL of a downstream service."""
        url: str = getattr(self, f"{service.value}_service_url")
        return url


@dataclass(frozen=True, slots=True)
class GatewaySecrets:
    """The managed secrets the gateway needs; values stay wrapped until used."""

    jwt_private_key: SecretStr
    assertion_private_key: SecretStr
    identity_service_token: SecretStr
    jwt_previous_public_key: SecretStr | None = None
    # Written by the rotations: the key before, and when the current key starts signing.
    jwt_previous_private_key: SecretStr | None = None
    jwt_not_before: SecretStr | None = None
    assertion_previous_private_key: SecretStr | None = None
    assertion_not_before: SecretStr | None = None
    metrics_scrape_token: SecretStr | None = None

    def __repr__(self) -> str:
        return "GatewaySecrets(<redacted>)"


# Each field of GatewaySecrets and the managed secret it holds.
SECRET_FIELDS = {
    "jwt_private_key": "GATEWAY_JWT_PRIVATE_KEY",
    "assertion_private_key": "GATEWAY_ASSERTION_PRIVATE_KEY",
    "identity_service_token": "IDENTITY_SERVICE_TOKEN",  # nosec B105 - a name, not a value
    "jwt_previous_public_key": "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY",
    "metrics_scrape_token": SCRAPE_TOKEN_SECRET,
    "jwt_previous_private_key": "GATEWAY_JWT_PREVIOUS_PRIVATE_KEY",
    "jwt_not_before": "GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE",
    "assertion_previous_private_key": "GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY",
    "assertion_not_before": "GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE",
}
REQUIRED_FIELDS = ("jwt_private_key", "assertion_private_key", "identity_service_token")


async def load_secrets() -> GatewaySecrets:
    """Resolve the gateway's secrets through the shared secrets layer.

    On the env provider with `SECRETS_ENV_FILE`, the file's values win over the environment
    this process started with: a gateway restarted after a rotation starts with what the
    others re-read, not with the keys from before it.
    """
    try:
        async with SecretsManager.from_environment(service="gateway") as manager:
            values = {
                field: await (
                    manager.require(name) if field in REQUIRED_FIELDS else manager.get(name)
                )
                for field, name in SECRET_FIELDS.items()
            }
            if manager.settings.secrets_env_file is not None and manager.store_location is None:
                fresh = await read_fresh(manager, SECRET_FIELDS.values())
                values.update(
                    {field: fresh[name] for field, name in SECRET_FIELDS.items() if fresh[name]}
                )
    except SecretsError as exc:
        raise StartupError(f"gateway cannot start: {exc}") from None
    return GatewaySecrets(**values)  # type: ignore[arg-type]


def load_settings() -> Settings:
    """Read the settings from the environment, naming each bad variable in one line."""
    try:
        return Settings()
    except ValidationError as exc:
        raise StartupError(f"gateway cannot start: {settings_problems(exc)}") from None
