"""Frontend settings (session timeouts, cookie flags, where the gateway is) and the secret it
needs at start-up."""

from dataclasses import dataclass

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.frontend.errors import StartupError
from shared.errors import settings_problems
from shared.metrics import SCRAPE_TOKEN_SECRET
from shared.secrets import SecretsError, SecretsManager
from shared.secrets.watch import read_fresh

SESSION_SECRET_NAME = "SESSION_SECRET_KEY"  # noqa: S105  # nosec B105 - the name, not the value
PREVIOUS_SESSION_SECRET_NAME = "SESSION_PREVIOUS_SECRET_KEY"  # noqa: S105  # nosec B105
NOT_BEFORE_NAME = "SESSION_SECRET_KEY_NOT_BEFORE"  # nosec B105
MIN_SECRET_BYTES = 32
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class SecuritySettings(BaseModel):
    """`SECURITY__*`: how long a browser session may live, how many, how its cookie is flagged."""

    # Idle seconds after which the session is gone (the guide's SECURITY__SESSION_TIMEOUT).
    session_timeout: PositiveInt = 1800
    # Absolute seconds after login after which the session is gone, however busy.
    session_lifetime: PositiveInt = 43200
    # Only a local run over plain HTTP turns this off (the generated `.env` does).
    cookie_secure: bool = True
    # Upper bound on sessions held by one process; the least recently used go first.
    max_sessions: PositiveInt = 10000
    # Signed-in sessions one user may hold at once; signing in again ends the oldest.
    max_sessions_per_user: PositiveInt = 5
    # Seconds a login or password form (its signed pass in the cookie) stays valid.
    form_timeout: PositiveInt = 1800


class Settings(BaseSettings):
    """Settings of the frontend process."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="ignore")

    security: SecuritySettings = SecuritySettings()
    gateway_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8000")
    gateway_timeout_seconds: PositiveFloat = 10.0
    # How often the pages' own script asks whether the session is still alive.
    status_poll_seconds: PositiveInt = 60
    # Where sessions live: unset keeps them in this process's memory; `redis://...` (or
    # `rediss://`) shares them between every frontend process pointed at the same Redis.
    frontend_session_url: SecretStr | None = None

    @field_validator("frontend_session_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(_REDIS_SCHEMES):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


def check_session_secret(secret: SecretStr) -> SecretStr:
    """Refuse a session secret shorter than 32 bytes."""
    if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
        raise StartupError(
            f"{SESSION_SECRET_NAME} is shorter than {MIN_SECRET_BYTES} bytes; "
            "provision at least 32 random bytes in the secrets store"
        )
    return secret


@dataclass(frozen=True, slots=True)
class FrontendSecrets:
    """The managed secret the frontend needs; refused at once when it is too short."""

    session_secret: SecretStr
    # The secret before the last rotation, still accepted (optional).
    previous_session_secret: SecretStr | None = None
    # When the secret starts signing (written by the rotation; optional).
    not_before: SecretStr | None = None
    metrics_scrape_token: SecretStr | None = None

    def __post_init__(self) -> None:
        check_session_secret(self.session_secret)


def load_settings() -> Settings:
    """Read the settings from the environment, naming every bad variable in one line."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = settings_problems(exc, delimiter="__")
        raise StartupError(f"invalid settings: {problems}") from None


async def load_secrets() -> FrontendSecrets:
    """Resolve the session secret (or an alias) through the secrets layer, or refuse to start."""
    try:
        async with SecretsManager.from_environment(service="frontend") as manager:
            secret = await manager.require(SESSION_SECRET_NAME)
            previous = await manager.get(PREVIOUS_SESSION_SECRET_NAME)
            not_before = await manager.get(NOT_BEFORE_NAME)
            if manager.settings.secrets_env_file is not None and manager.store_location is None:
                # On the env provider the file holds what was rotated since this process's
                # environment was set: a frontend restarted by `make run` starts with it.
                fresh = await read_fresh(
                    manager, (SESSION_SECRET_NAME, PREVIOUS_SESSION_SECRET_NAME, NOT_BEFORE_NAME)
                )
                secret = fresh[SESSION_SECRET_NAME] or secret
                previous = fresh[PREVIOUS_SESSION_SECRET_NAME] or previous
                not_before = fresh[NOT_BEFORE_NAME] or not_before
            metrics_token = await manager.get(SCRAPE_TOKEN_SECRET)
    except SecretsError as exc:
        # The layer's messages name the secret, its aliases and the store, never a value.
        raise StartupError(str(exc)) from None
    return FrontendSecrets(
        session_secret=secret,
        previous_session_secret=previous,
        not_before=not_before,
        metrics_scrape_token=metrics_token,
    )
