"""Settings of the secrets layer, read from the environment variables of the guide."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.secrets.errors import SecretsConfigError

ProviderName = Literal["env", "vault", "aws"]

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

    vault_addr: str | None = None
    vault_token: SecretStr | None = None
    vault_secret_path: str = "secret/legacycointrader"  # noqa: S105 - a path
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
