"""The portfolio service's long-lived resources, opened in the lifespan and closed after it."""

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from services.portfolio import metrics
from services.portfolio.accounts.service import IdentityService
from services.portfolio.config import (
    ASSERTION_KEY_SECRET,
    CANNOT_START,
    SERVICE_TOKEN_SECRET,
    PortfolioSettings,
    load_secrets,
    load_settings,
    open_secrets,
)
from services.portfolio.db import Database
from services.portfolio.errors import ConfigurationError
from services.portfolio.trading.service import TradeBook
from shared.assertion import (
    PREVIOUS_PUBLIC_KEY_SECRET,
    VERIFIER_KEY_SECRETS,
    AssertionVerifier,
    apply_verifier_keys,
)
from shared.keys import KeyFormatError
from shared.roles import Service
from shared.secrets import SecretsManager
from shared.secrets.watch import LiveSecret, SecretValues, SecretWatcher
from shared.workers import ListenerTakenError, sole_worker

logger = logging.getLogger("services.portfolio")


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: PortfolioSettings
    database: Database
    identity: IdentityService
    trades: TradeBook
    verifier: AssertionVerifier
    # Replaced in place when the token is rotated in the secrets store.
    service_token: LiveSecret
    # `GET /metrics` answers this bearer token alone (shared.metrics); None: nobody.
    metrics_token: SecretStr | None = None

    async def refresh_metrics(self) -> None:
        """Read this app's own database pool for a scrape (another engine of the process may
        have set the gauges last)."""
        metrics.read_pool(self.database.engine.sync_engine.pool)


def assertion_verifier(public_keys: list[str]) -> AssertionVerifier:
    """Return the verifier of the gateway's identity assertions addressed to this service."""
    try:
        return AssertionVerifier(public_keys, audience=Service.PORTFOLIO)
    except (KeyFormatError, ValueError):
        # Names the secret, never its value.
        raise ConfigurationError(
            f"{CANNOT_START}: {ASSERTION_KEY_SECRET} or {PREVIOUS_PUBLIC_KEY_SECRET} is not an "
            "Ed25519 public key (PEM, or base64url of the raw 32 bytes)"
        ) from None


def live_secrets_watcher(
    manager: SecretsManager, verifier: AssertionVerifier, service_token: LiveSecret
) -> SecretWatcher:
    """Return the watcher (not started) keeping the service token and assertion keys current."""

    async def apply(values: SecretValues) -> None:
        token = values.get(SERVICE_TOKEN_SECRET)
        if token is None:
            raise ValueError(f"{SERVICE_TOKEN_SECRET} is no longer set")
        apply_verifier_keys(verifier, values)
        # From here on the new token is accepted and the old one refused.
        service_token.value = token

    return SecretWatcher(manager, (SERVICE_TOKEN_SECRET, *VERIFIER_KEY_SECRETS), apply)


@asynccontextmanager
async def open_runtime(
    settings: PortfolioSettings | None = None, *, secrets_manager: SecretsManager | None = None
) -> AsyncIterator[Runtime]:
    """Build the runtime: settings (from the environment when omitted), the secrets, the
    database (migrated); close what was opened when the block ends."""
    settings = settings if settings is not None else load_settings()
    with _sole_worker():
        async with _open_runtime(settings, secrets_manager) as runtime:
            yield runtime


@contextmanager
def _sole_worker() -> Iterator[None]:
    # The throttle of names without an account lives in the process: a second worker on the
    # same socket would refuse an unknown name later than an account, which tells them apart.
    try:
        with sole_worker("portfolio"):
            yield
    except ListenerTakenError as exc:
        raise ConfigurationError(
            f"{CANNOT_START}: another portfolio worker already serves {exc.address}; the login "
            "throttle of unknown usernames is kept in each worker, so a second one would let "
            "a caller tell unknown names from accounts; run one worker (password hashing "
            "already runs on threads across every core)"
        ) from None


@asynccontextmanager
async def _open_runtime(
    settings: PortfolioSettings, secrets_manager: SecretsManager | None
) -> AsyncIterator[Runtime]:
    manager = secrets_manager if secrets_manager is not None else open_secrets()
    try:
        secrets = await load_secrets(manager)
        verifier = assertion_verifier(secrets.assertion_public_keys())
        service_token = LiveSecret(secrets.service_token)
        database = await Database.open(settings)
        logger.info("portfolio service using the %s", database.description)
        watcher = live_secrets_watcher(manager, verifier, service_token)
        service_token.refresh = watcher.refresh
        watcher.start()
        try:
            yield Runtime(
                settings=settings,
                database=database,
                identity=IdentityService(database, settings, secrets_manager=manager),
                trades=TradeBook(database),
                verifier=verifier,
                service_token=service_token,
                metrics_token=secrets.metrics_scrape_token,
            )
        finally:
            await watcher.stop()
            await database.close()
    finally:
        # A manager handed in belongs to the caller.
        if secrets_manager is None:
            await manager.aclose()
