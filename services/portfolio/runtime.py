"""The portfolio service's long-lived resources, opened in the lifespan and closed after it."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from services.portfolio.accounts.service import IdentityService
from services.portfolio.config import (
    ASSERTION_KEY_SECRET,
    CANNOT_START,
    PortfolioSettings,
    load_secrets,
    load_settings,
    open_secrets,
)
from services.portfolio.db import Database
from services.portfolio.errors import ConfigurationError
from services.portfolio.trading.service import TradeBook
from shared.assertion import AssertionVerifier
from shared.keys import KeyFormatError
from shared.roles import Service
from shared.secrets import SecretsManager

logger = logging.getLogger("services.portfolio")


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: PortfolioSettings
    database: Database
    identity: IdentityService
    trades: TradeBook
    verifier: AssertionVerifier
    service_token: SecretStr


def assertion_verifier(public_key: SecretStr) -> AssertionVerifier:
    """Return the verifier of the gateway's identity assertions addressed to this service."""
    try:
        return AssertionVerifier([public_key.get_secret_value()], audience=Service.PORTFOLIO)
    except (KeyFormatError, ValueError):
        # Names the secret, never its value.
        raise ConfigurationError(
            f"{CANNOT_START}: {ASSERTION_KEY_SECRET} is not an Ed25519 "
            "public key (PEM, or base64url of the raw 32 bytes)"
        ) from None


@asynccontextmanager
async def open_runtime(
    settings: PortfolioSettings | None = None, *, secrets_manager: SecretsManager | None = None
) -> AsyncIterator[Runtime]:
    """Build the runtime: settings (from the environment when omitted), the secrets, the
    database (migrated); close what was opened when the block ends."""
    settings = settings if settings is not None else load_settings()
    manager = secrets_manager if secrets_manager is not None else open_secrets()
    try:
        secrets = await load_secrets(manager)
        verifier = assertion_verifier(secrets.assertion_public_key)
        database = await Database.open(settings)
        logger.info("portfolio service using the %s", database.description)
        try:
            yield Runtime(
                settings=settings,
                database=database,
                identity=IdentityService(database, settings, secrets_manager=manager),
                trades=TradeBook(database),
                verifier=verifier,
                service_token=secrets.service_token,
            )
        finally:
            await database.close()
    finally:
        # A manager handed in belongs to the caller.
        if secrets_manager is None:
            await manager.aclose()
