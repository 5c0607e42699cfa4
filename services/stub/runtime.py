"""What a stub builds once at start-up: its settings and the assertion verifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from services.stub.config import StubSecrets, StubSettings, load_secrets, load_settings
from services.stub.errors import StartupError
from shared.assertion import AssertionVerifier, watch_verifier_keys
from shared.keys import KeyFormatError
from shared.secrets import SecretsError, SecretsManager


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request needs, built once per process."""

    settings: StubSettings
    verifier: AssertionVerifier
    # `GET /metrics` answers this bearer token alone (shared.metrics); None: nobody.
    metrics_token: SecretStr | None = None

    @property
    def service(self) -> str:
        """Return the name of the service this stub plays."""
        return self.settings.stub_service_name.value


@asynccontextmanager
async def open_runtime(
    settings: StubSettings | None = None, secrets: StubSecrets | None = None
) -> AsyncIterator[Runtime]:
    """Build the runtime from settings and secrets (read from the environment when omitted).

    Keys read from the environment are read again every `SECRETS_CACHE_TTL_SECONDS`, so a
    rotated assertion key is taken up without a restart.
    """
    settings = settings if settings is not None else load_settings()
    manager = _open_manager() if secrets is None else None
    secrets = secrets if secrets is not None else await load_secrets()
    try:
        verifier = AssertionVerifier(secrets.public_keys(), audience=settings.stub_service_name)
    except (KeyFormatError, ValueError):
        raise StartupError(
            "stub cannot start: GATEWAY_ASSERTION_PUBLIC_KEY or "
            "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY is not an Ed25519 public key"
        ) from None
    runtime = Runtime(
        settings=settings, verifier=verifier, metrics_token=secrets.metrics_scrape_token
    )
    if manager is None:
        yield runtime
        return
    watcher = watch_verifier_keys(manager, verifier)
    watcher.start()
    try:
        yield runtime
    finally:
        await watcher.stop()
        await manager.aclose()


def _open_manager() -> SecretsManager:
    try:
        return SecretsManager.from_environment(service="stub")
    except SecretsError as exc:
        raise StartupError(f"stub cannot start: {exc}") from None
