"""Rotated secrets in a running gateway, and the rotation ceremony of its two signing keys.

A running gateway re-reads its secrets every `SECRETS_CACHE_TTL_SECONDS`. A new signing key
verifies at once but signs only one read interval (plus a margin) after this gateway saw
it: by then every other gateway has seen it too, so no token of the new key reaches a
gateway that does not know it. The assertion key waits the same way for the downstream
services to learn its public half. The service token is used as soon as it is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from services.api_gateway.assertions import AssertionCache
from services.api_gateway.identity import SERVICE_TOKEN_HEADER
from services.api_gateway.tokens import TokenService
from shared.assertion import AssertionSigner
from shared.clock import epoch_seconds
from shared.keys import (
    KeyFormatError,
    generate_private_key,
    key_id,
    load_private_key,
    load_public_key,
    public_key_text,
)
from shared.secrets import SecretsManager
from shared.secrets.envfile import write_env_values
from shared.secrets.errors import MissingSecretError, SecretsConfigError
from shared.secrets.stores import create_store
from shared.secrets.watch import SecretValues, SecretWatcher, read_fresh

logger = logging.getLogger("services.api_gateway")

T = TypeVar("T")

# Secret names; not credentials.
JWT_PRIVATE_KEY = "GATEWAY_JWT_PRIVATE_KEY"  # nosec B105
JWT_PREVIOUS_PUBLIC_KEY = "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"  # nosec B105
ASSERTION_PRIVATE_KEY = "GATEWAY_ASSERTION_PRIVATE_KEY"  # nosec B105
ASSERTION_PUBLIC_KEY = "GATEWAY_ASSERTION_PUBLIC_KEY"  # nosec B105
ASSERTION_PREVIOUS_PUBLIC_KEY = "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"  # nosec B105
SERVICE_TOKEN = "IDENTITY_SERVICE_TOKEN"  # noqa: S105  # nosec B105

WATCHED = (JWT_PRIVATE_KEY, JWT_PREVIOUS_PUBLIC_KEY, ASSERTION_PRIVATE_KEY, SERVICE_TOKEN)
# Covers the time one read of the store takes, on top of the read interval.
ACTIVATION_MARGIN_SECONDS = 2.0


class LiveKeys:
    """Apply re-read gateway secrets to the running token service, assertions and client."""

    def __init__(
        self,
        *,
        tokens: TokenService,
        assertions: AssertionCache,
        identity_http: httpx.AsyncClient,
        assertion_ttl_seconds: int,
        activation_delay: float,
    ) -> None:
        self._tokens = tokens
        self._assertions = assertions
        self._identity_http = identity_http
        self._assertion_ttl = assertion_ttl_seconds
        self.activation_delay = activation_delay

    async def apply(self, values: SecretValues) -> None:
        """Take up the values; refuse them all, naming the secret, if one is unusable."""
        private = _required(values, JWT_PRIVATE_KEY)
        assertion = _required(values, ASSERTION_PRIVATE_KEY)
        token = _required(values, SERVICE_TOKEN)
        previous = values.get(JWT_PREVIOUS_PUBLIC_KEY)
        # Everything is parsed before anything changes: a bad value changes nothing.
        _parse(JWT_PRIVATE_KEY, private, load_private_key)
        if previous is not None:
            _parse(JWT_PREVIOUS_PUBLIC_KEY, previous, load_public_key)
        signer = _parse(
            ASSERTION_PRIVATE_KEY,
            assertion,
            lambda text: AssertionSigner(text, ttl_seconds=self._assertion_ttl),
        )
        activate_at = epoch_seconds() + self.activation_delay
        self._tokens.set_previous_public_keys(
            [previous.get_secret_value()] if previous is not None else []
        )
        self._tokens.rotate(private.get_secret_value(), activate_at=activate_at)
        self._assertions.rotate(signer, activate_at=activate_at)
        self._identity_http.headers[SERVICE_TOKEN_HEADER] = token.get_secret_value()


def live_keys_watcher(
    manager: SecretsManager,
    *,
    tokens: TokenService,
    assertions: AssertionCache,
    identity_http: httpx.AsyncClient,
    assertion_ttl_seconds: int,
) -> SecretWatcher:
    """Return the watcher that keeps the gateway's secrets current (not started)."""
    keys = LiveKeys(
        tokens=tokens,
        assertions=assertions,
        identity_http=identity_http,
        assertion_ttl_seconds=assertion_ttl_seconds,
        activation_delay=0.0,
    )
    watcher = SecretWatcher(manager, WATCHED, keys.apply)
    keys.activation_delay = watcher.interval + ACTIVATION_MARGIN_SECONDS
    return watcher


def _required(values: SecretValues, name: str) -> SecretStr:
    value = values.get(name)
    if value is None:
        raise ValueError(f"{name} is no longer set")
    return value


def _parse(name: str, value: SecretStr, parse: Callable[[str], T]) -> T:
    try:
        return parse(value.get_secret_value())
    except (KeyFormatError, ValueError, TypeError):
        raise ValueError(f"{name} is not an Ed25519 key (PEM or base64url raw 32 bytes)") from None


# The rotation ceremony.


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation wrote: the key ids (never a key) and where."""

    new_kid: str
    previous_kid: str
    written_to: str


async def rotate_signing_key(manager: SecretsManager, *, env_file: Path) -> Rotation:
    """Write a new token-signing key; the current public key becomes the previous one."""
    current = await _current_private_key(manager, JWT_PRIVATE_KEY, env_file=env_file)
    new = generate_private_key()
    updates = {
        # The previous key first: a gateway reading in between still verifies every token.
        JWT_PREVIOUS_PUBLIC_KEY: public_key_text(current),
        JWT_PRIVATE_KEY: new,
    }
    written_to = await _write(manager, updates, env_file=env_file)
    return Rotation(key_id(load_private_key(new)), key_id(current), written_to)


async def rotate_assertion_key(manager: SecretsManager, *, env_file: Path) -> Rotation:
    """Write a new assertion key and its public half; the current public key becomes the
    previous one, which downstream services keep accepting."""
    current = await _current_private_key(manager, ASSERTION_PRIVATE_KEY, env_file=env_file)
    new = generate_private_key()
    updates = {
        # Public halves before the private key: gateways sign with it only after a delay,
        # but a crash between the writes must never leave a key nobody can verify.
        ASSERTION_PREVIOUS_PUBLIC_KEY: public_key_text(current),
        ASSERTION_PUBLIC_KEY: public_key_text(load_private_key(new)),
        ASSERTION_PRIVATE_KEY: new,
    }
    written_to = await _write(manager, updates, env_file=env_file)
    return Rotation(key_id(load_private_key(new)), key_id(current), written_to)


async def _current_private_key(
    manager: SecretsManager, name: str, *, env_file: Path
) -> Ed25519PrivateKey:
    value = (await read_fresh(manager, [name], env_file=env_file))[name]
    if value is None:
        raise MissingSecretError(name, (), manager.consulted)
    try:
        return load_private_key(value.get_secret_value())
    except (KeyFormatError, ValueError, TypeError):
        raise SecretsConfigError(
            f"the current {name} is not an Ed25519 private key; rotate by writing a new one"
        ) from None


async def _write(manager: SecretsManager, updates: dict[str, str], *, env_file: Path) -> str:
    store = create_store(manager.settings)
    if store is None:
        await anyio.to_thread.run_sync(write_env_values, env_file, updates)
        return str(env_file)
    try:
        for name, value in updates.items():
            await store.write(name, value)
    finally:
        await store.aclose()
    return store.location
