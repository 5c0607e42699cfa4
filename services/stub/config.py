"""Stub settings (which service this process plays) and the key it needs at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.stub.errors import StartupError
from shared.assertion import PREVIOUS_PUBLIC_KEY_SECRET, PUBLIC_KEY_SECRET
from shared.errors import settings_problems
from shared.metrics import SCRAPE_TOKEN_SECRET
from shared.roles import SERVICES, Service
from shared.secrets import SecretsError, SecretsManager

# The portfolio service is real; the stubs stand in for the other six.
STUB_SERVICES: tuple[Service, ...] = tuple(s for s in SERVICES if s is not Service.PORTFOLIO)


class StubSettings(BaseSettings):
    """`STUB_SERVICE_NAME`: one of trading, market, strategy, token, execution, monitoring."""

    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    stub_service_name: Service

    @field_validator("stub_service_name", mode="before")
    @classmethod
    def _stub_service(cls, value: object) -> object:
        names = [service.value for service in STUB_SERVICES]
        if str(value).strip().lower() not in names:
            raise ValueError(f"must be one of {', '.join(names)}")
        return str(value).strip().lower()


@dataclass(frozen=True, slots=True)
class StubSecrets:
    """What a stub resolves through the secrets layer: the gateway's assertion public key."""

    assertion_public_key: str
    # Still accepted while a rotation of the assertion key is under way.
    assertion_previous_public_key: str | None = None
    metrics_scrape_token: SecretStr | None = None

    def public_keys(self) -> list[str]:
        """Return the keys assertions may be signed with, current first."""
        previous = self.assertion_previous_public_key
        return [self.assertion_public_key, *([previous] if previous else [])]


def load_settings() -> StubSettings:
    """Read the settings, naming a bad variable in one line."""
    try:
        return StubSettings()
    except ValidationError as exc:
        raise StartupError(f"stub cannot start: {settings_problems(exc)}") from None


async def load_secrets() -> StubSecrets:
    """Resolve the gateway's assertion public key through the shared secrets layer."""
    try:
        async with SecretsManager.from_environment(service="stub") as manager:
            key = await manager.require(PUBLIC_KEY_SECRET)
            previous = await manager.get(PREVIOUS_PUBLIC_KEY_SECRET)
            metrics_token = await manager.get(SCRAPE_TOKEN_SECRET)
    except SecretsError as exc:
        raise StartupError(f"stub cannot start: {exc}") from None
    return StubSecrets(
        assertion_public_key=key.get_secret_value(),
        assertion_previous_public_key=previous.get_secret_value() if previous else None,
        metrics_scrape_token=metrics_token,
    )
