"""Settings of the secrets layer, read from the environment variables of the guide."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.secrets.errors import SecretsConfigError
from shared.secrets.registry import Consumer

ProviderName = Literal["env", "vault", "aws"]
VaultLayout = Literal["single", "per-service"]

PROVIDER_VALUES = ("env", "vault", "hashicorp", "aws")
_PROVIDER_ALIASES: dict[str, ProviderName] = {
    "env": "env",
    "vault": "vault",
    "hashicorp": "vault",
    "aws": "aws",
}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class SecretsSettings(BaseSettings):
    """Where secrets come from; field names are the environment variable names."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    secrets_provider: ProviderName = "env"
    secrets_cache_ttl_seconds: Annotated[float, Field(ge=0)] = 300.0
    secrets_registry_path: Path | None = None
    # With the env provider: the `.env` file running services re-read for rotated values.
    secrets_env_file: Path | None = None

    # Which service's secrets to read (`per-service` layout); services may also pass it.
    secrets_service: Consumer | None = None

    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_role_id: str | None = None
    # For a deployment where the role id, too, arrives as a file (e.g. compose's provisioning).
    vault_role_id_file: Path | None = None
    vault_secret_id: SecretStr | None = None
    vault_secret_id_file: Path | None = None
    vault_approle_mount: str = "approle"
    vault_secret_path: str = "secret/legacycointrader"  # noqa: S105 - a path
    # `single`: one document at VAULT_SECRET_PATH; `per-service`: one document per service
    # (and per group of services) under it, see shared/secrets/layout.py.
    vault_secret_layout: VaultLayout = "single"  # noqa: S105 - a layout name
    vault_verify: str = "true"
    vault_timeout: Annotated[float, Field(gt=0)] = 5.0

    aws_secret_name: str | None = None
    aws_region: str | None = None
    aws_profile: str | None = None
    aws_endpoint_url: str | None = None
    aws_timeout: Annotated[float, Field(gt=0)] = 5.0

    @field_validator("secrets_provider", mode="before")
    @classmethod
    def _known_provider(cls, value: object) -> object:
        key = str(value).strip().lower()
        if key not in _PROVIDER_ALIASES:
            raise ValueError(
                f"SECRETS_PROVIDER={value!s} is not supported; accepted values: "
                + ", ".join(PROVIDER_VALUES)
            )
        return _PROVIDER_ALIASES[key]

    @field_validator("secrets_service", mode="before")
    @classmethod
    def _blank_service_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("vault_verify", mode="before")
    @classmethod
    def _verify_form(cls, value: object) -> object:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value).strip()

    @classmethod
    def from_environment(cls) -> SecretsSettings:
        """Read the settings, turning a bad value into one `SecretsConfigError` line."""
        try:
            return cls()
        except ValidationError as exc:
            raise SecretsConfigError(describe_settings_error(exc)) from None

    def vault_verify_value(self) -> bool | str:
        """Return `VAULT_VERIFY` as hvac wants it: a bool or a CA bundle path."""
        key = self.vault_verify.lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
        if Path(self.vault_verify).exists():
            return self.vault_verify
        raise SecretsConfigError(
            f"VAULT_VERIFY={self.vault_verify} is neither true/false nor an existing CA bundle path"
        )

    def vault_address(self) -> str:
        """Return `VAULT_ADDR` checked: http(s), a host, nothing after the path."""
        addr = (self.vault_addr or "").strip()
        try:
            parts = urlsplit(addr)
            host, _ = parts.hostname, parts.port
        except ValueError:
            parts, host = None, None
        if parts is None or parts.scheme not in ("http", "https") or not host:
            raise SecretsConfigError(
                "VAULT_ADDR must be an http:// or https:// address, e.g. https://vault.example:8200"
            )
        # hvac appends /v1/... to the address as text: a query string or fragment would end
        # up in the middle of every request URL.
        if parts.query or parts.fragment or addr.endswith(("?", "#")):
            raise SecretsConfigError(
                "VAULT_ADDR must not carry a query string or fragment (the part from ? or #); "
                "give only scheme, host, port and an optional path, e.g. https://vault.example:8200"
            )
        if parts.username is not None or parts.password is not None:
            raise SecretsConfigError(
                "VAULT_ADDR must not carry a user or password; authenticate with VAULT_TOKEN "
                "or VAULT_ROLE_ID and VAULT_SECRET_ID"
            )
        return addr.rstrip("/")

    def vault_mount_and_path(self) -> tuple[str, str]:
        """Split `VAULT_SECRET_PATH` (`<mount>/<path>`) at its first slash."""
        mount, _, path = self.vault_secret_path.strip("/").partition("/")
        if not mount or not path:
            raise SecretsConfigError(
                f"VAULT_SECRET_PATH={self.vault_secret_path} must have the form <mount>/<path>, "
                "e.g. secret/legacycointrader"
            )
        return mount, path


def describe_settings_error(exc: ValidationError) -> str:
    """Name the environment variable behind each failing field, never its value if secret."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = ".".join(str(part) for part in error["loc"]).upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if message.startswith(variable):
            problems.append(message)
        else:
            problems.append(f"{variable}: {message}")
    return "; ".join(problems)
