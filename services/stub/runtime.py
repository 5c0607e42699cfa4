"""What a stub builds once at start-up: its settings and the assertion verifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from services.stub.config import StubSecrets, StubSettings, load_secrets, load_settings
from services.stub.errors import StartupError
from shared.assertion import AssertionVerifier
from shared.keys import KeyFormatError


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request needs, built once per process."""

    settings: StubSettings
    verifier: AssertionVerifier

    @property
    def service(self) -> str:
        """Return the name of the service this stub plays."""
        return self.settings.stub_service_name.value


@asynccontextmanager
async def open_runtime(
    settings: StubSettings | None = None, secrets: StubSecrets | None = None
) -> AsyncIterator[Runtime]:
    """Build the runtime from settings and secrets (read from the environment when omitted)."""
    settings = settings if settings is not None else load_settings()
    secrets = secrets if secrets is not None else await load_secrets()
    try:
        verifier = AssertionVerifier(
            [secrets.assertion_public_key], audience=settings.stub_service_name
        )
    except (KeyFormatError, ValueError):
        raise StartupError(
            "stub cannot start: GATEWAY_ASSERTION_PUBLIC_KEY is not an Ed25519 public key"
        ) from None
    yield Runtime(settings=settings, verifier=verifier)
