"""Settings of the portfolio service, read from `PORTFOLIO_*` environment variables, and the
secrets it needs at start-up."""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.portfolio.errors import ConfigurationError
from shared.assertion import PREVIOUS_PUBLIC_KEY_SECRET, PUBLIC_KEY_SECRET
from shared.metrics import SCRAPE_TOKEN_SECRET
from shared.roles import RoleList, parse_role_list
from shared.secrets import SecretsError, SecretsManager

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATABASE_PATH = REPO_ROOT / "var" / "portfolio.db"
DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{DEFAULT_DATABASE_PATH}"

ENV_PREFIX = "PORTFOLIO_"
SERVICE_TOKEN_SECRET = "IDENTITY_SERVICE_TOKEN"  # noqa: S105  # nosec B105 - a secret's name
ASSERTION_KEY_SECRET = PUBLIC_KEY_SECRET
CANNOT_START = "the portfolio service cannot start"

PositiveInt = Annotated[int, Field(ge=1)]


class PortfolioSettings(BaseSettings):
    """Where the identity store lives and the rules it enforces."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # A URL may carry a password: kept out of reprs and logs.
    database_url: SecretStr = SecretStr(DEFAULT_DATABASE_URL)
    database_connect_timeout: Annotated[float, Field(gt=0)] = 5.0

    # 0 turns expiry off.
    password_rotation_days: Annotated[int, Field(ge=0)] = 90
    password_min_length: Annotated[int, Field(ge=12)] = 12
    password_max_length: Annotated[int, Field(ge=128, le=4096)] = 1024
    # The lowest zxcvbn strength score (0..4) a new password may have. 3 is "safely
    # unguessable" (about 10**10 guesses); it may be raised to 4, never lowered.
    password_min_score: Annotated[int, Field(ge=3, le=4)] = 3

    # Argon2id cost; argon2-cffi's defaults (RFC 9106 low-memory profile). Tests lower them.
    argon2_time_cost: PositiveInt = 3
    argon2_memory_cost: Annotated[int, Field(ge=8)] = 65536  # KiB
    argon2_parallelism: PositiveInt = 4

    # Each Argon2id run holds `argon2_memory_cost` KiB and keeps `argon2_parallelism` cores
    # busy: at most `hashing_concurrency` run at once (unset: as many as the cores carry and
    # `hashing_memory_mib` holds), `hashing_queue` more wait up to `hashing_max_wait_seconds`,
    # the rest are answered 503 identity_busy at once.
    hashing_concurrency: PositiveInt | None = None
    hashing_memory_mib: PositiveInt = 256
    hashing_queue: Annotated[int, Field(ge=0)] = 8
    hashing_max_wait_seconds: Annotated[float, Field(gt=0)] = 2.0
    # The nice level of hashing threads (Linux): a storm takes the cores other requests
    # leave idle instead of competing with them. 0 keeps the normal priority.
    hashing_niceness: Annotated[int, Field(ge=0, le=19)] = 10

    # After `threshold` consecutive failures an account is refused for base * 2**(n - threshold)
    # seconds, capped, so a victim of a guessing attack waits minutes, never forever.
    login_throttle_threshold: PositiveInt = 5
    login_throttle_base_seconds: Annotated[float, Field(gt=0)] = 30.0
    login_throttle_max_seconds: Annotated[float, Field(gt=0)] = 900.0

    # Roles whose holders must sign in with a second factor (comma-separated; empty: nobody).
    mfa_required_roles: RoleList = "admin"
    # How long a second-step challenge (and an enrolment-only one) may be answered.
    mfa_challenge_seconds: Annotated[int, Field(ge=30, le=3600)] = 300
    # The issuer a TOTP app shows next to the account.
    mfa_issuer: Annotated[str, Field(min_length=1, max_length=64)] = "LegacyCoinTrader"
    # WebAuthn relying party: the id (the site's host name) and the origins allowed.
    webauthn_rp_id: Annotated[str, Field(min_length=1, max_length=253)] = "localhost"
    webauthn_rp_name: Annotated[str, Field(min_length=1, max_length=64)] = "LegacyCoinTrader"
    webauthn_origins: str = "http://localhost:8080"

    def mfa_roles(self) -> frozenset[str]:
        """Return the roles whose holders must use a second factor."""
        return parse_role_list(self.mfa_required_roles)

    def webauthn_origin_list(self) -> list[str]:
        """Return the origins a passkey ceremony may come from."""
        return [part.strip() for part in self.webauthn_origins.split(",") if part.strip()]

    def hashing_slots(self) -> int:
        """Return how many password hashes may run at once."""
        if self.hashing_concurrency is not None:
            return self.hashing_concurrency
        by_memory = self.hashing_memory_mib * 1024 // self.argon2_memory_cost
        by_cores = _cores() // self.argon2_parallelism
        return max(1, min(by_cores, by_memory))


def _cores() -> int:
    # The cores this process may run on (a CPU-pinned container has fewer than the host).
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class PortfolioSecrets:
    """The managed secrets the service needs; values stay wrapped until used."""

    service_token: SecretStr
    assertion_public_key: SecretStr
    # Still accepted while a rotation of the assertion key is under way.
    assertion_previous_public_key: SecretStr | None = None
    metrics_scrape_token: SecretStr | None = None

    def assertion_public_keys(self) -> list[str]:
        """Return the keys assertions may be signed with, current first."""
        previous = self.assertion_previous_public_key
        keys = [self.assertion_public_key, *([previous] if previous is not None else [])]
        return [key.get_secret_value() for key in keys]

    def __repr__(self) -> str:
        return "PortfolioSecrets(<redacted>)"


def load_settings() -> PortfolioSettings:
    """Read the settings from the environment, naming each bad variable in one line."""
    try:
        return PortfolioSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'.'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigurationError(f"{CANNOT_START}: {problems}") from None


def open_secrets() -> SecretsManager:
    """Open the secrets layer the environment configures."""
    try:
        return SecretsManager.from_environment(service="portfolio")
    except SecretsError as exc:
        raise ConfigurationError(str(exc)) from None


async def load_secrets(manager: SecretsManager | None = None) -> PortfolioSecrets:
    """Resolve the service token and the gateway's assertion key through the secrets layer
    (`manager`, else one opened from the environment for this call)."""
    if manager is None:
        async with open_secrets() as opened:
            return await load_secrets(opened)
    try:
        return PortfolioSecrets(
            service_token=await manager.require(SERVICE_TOKEN_SECRET),
            assertion_public_key=await manager.require(ASSERTION_KEY_SECRET),
            assertion_previous_public_key=await manager.get(PREVIOUS_PUBLIC_KEY_SECRET),
            metrics_scrape_token=await manager.get(SCRAPE_TOKEN_SECRET),
        )
    except SecretsError as exc:
        raise ConfigurationError(f"{CANNOT_START}: {exc}") from None
