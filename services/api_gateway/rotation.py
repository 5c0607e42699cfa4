"""Rotated secrets in a running gateway, and the rotation ceremony of its two signing keys.

A running gateway re-reads its secrets every `SECRETS_CACHE_TTL_SECONDS`. A new signing key
verifies at once but signs only once every other gateway has read it too, so no token of the
new key reaches a gateway that does not know it. The rotation writes that time with the key
(`..._NOT_BEFORE`: one read interval plus a margin after the write) and keeps the key before
(`..._PREVIOUS_PRIVATE_KEY`): a gateway that starts, or first reads the new key, before that
time signs with the previous key until then. Without a not-before of its key (a key written
by hand) a gateway waits one interval plus the margin from its own read. The assertion key
waits the same way for the downstream services to learn its public half. The service token
is used as soon as it is read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

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
from shared.secrets.errors import MissingSecretError, SecretsConfigError
from shared.secrets.rotate import write_rotation
from shared.secrets.watch import MIN_INTERVAL_SECONDS, SecretValues, SecretWatcher, read_fresh

logger = logging.getLogger("services.api_gateway")

T = TypeVar("T")

# Secret names; not credentials.
JWT_PRIVATE_KEY = "GATEWAY_JWT_PRIVATE_KEY"  # nosec B105
JWT_PREVIOUS_PUBLIC_KEY = "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"  # nosec B105
JWT_PREVIOUS_PRIVATE_KEY = "GATEWAY_JWT_PREVIOUS_PRIVATE_KEY"  # nosec B105
JWT_NOT_BEFORE = "GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE"  # nosec B105
ASSERTION_PRIVATE_KEY = "GATEWAY_ASSERTION_PRIVATE_KEY"  # nosec B105
ASSERTION_PUBLIC_KEY = "GATEWAY_ASSERTION_PUBLIC_KEY"  # nosec B105
ASSERTION_PREVIOUS_PUBLIC_KEY = "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"  # nosec B105
ASSERTION_PREVIOUS_PRIVATE_KEY = "GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY"  # nosec B105
ASSERTION_NOT_BEFORE = "GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE"  # nosec B105
SERVICE_TOKEN = "IDENTITY_SERVICE_TOKEN"  # noqa: S105  # nosec B105

WATCHED = (
    JWT_PRIVATE_KEY,
    JWT_PREVIOUS_PUBLIC_KEY,
    JWT_NOT_BEFORE,
    ASSERTION_PRIVATE_KEY,
    ASSERTION_NOT_BEFORE,
    SERVICE_TOKEN,
)
# Covers the time the rotation's writes and one read of the store take, and clocks that
# differ by a second, on top of the read interval.
ACTIVATION_MARGIN_SECONDS = 2.0


def not_before_text(at: float, kid: str) -> str:
    """Return the value of a `..._NOT_BEFORE` secret: when the key of `kid` starts signing."""
    return f"{int(at + 0.999)} {kid}"


def not_before_of(value: SecretStr | None, kid: str) -> float | None:
    """Return when the key of `kid` starts signing; None unless `value` is about that key."""
    if value is None:
        return None
    at, _, named = value.get_secret_value().strip().partition(" ")
    if named.strip() != kid:
        return None  # the not-before of a key before this one (or unreadable)
    try:
        return float(int(at))
    except ValueError:
        return None


def startup_key(
    current: SecretStr, previous: SecretStr | None, not_before: SecretStr | None, *, now: float
) -> tuple[str, float | None]:
    """Return the key a starting gateway signs with and, when that is the previous key, the
    time from which `current` takes over."""
    at = not_before_of(not_before, key_id(load_private_key(current.get_secret_value())))
    if at is None or at <= now or previous is None:
        return current.get_secret_value(), None
    return previous.get_secret_value(), at


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
        # The not-before the rotation wrote with the key, else one interval from this read.
        fallback = epoch_seconds() + self.activation_delay
        jwt_at = not_before_of(values.get(JWT_NOT_BEFORE), self._kid(private))
        assertion_at = not_before_of(values.get(ASSERTION_NOT_BEFORE), signer.kid)
        self._tokens.set_previous_public_keys(
            [previous.get_secret_value()] if previous is not None else []
        )
        self._tokens.rotate(
            private.get_secret_value(), activate_at=jwt_at if jwt_at is not None else fallback
        )
        self._assertions.rotate(
            signer, activate_at=assertion_at if assertion_at is not None else fallback
        )
        self._identity_http.headers[SERVICE_TOKEN_HEADER] = token.get_secret_value()

    @staticmethod
    def _kid(private: SecretStr) -> str:
        return key_id(load_private_key(private.get_secret_value()))


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
    # When gateways start signing with the new key (unix seconds).
    not_before: int


def _not_before(manager: SecretsManager) -> float:
    # Every running service reads the new key within one interval of the write.
    interval = max(manager.settings.secrets_cache_ttl_seconds, MIN_INTERVAL_SECONDS)
    return epoch_seconds() + interval + ACTIVATION_MARGIN_SECONDS


async def rotate_signing_key(manager: SecretsManager, *, env_file: Path) -> Rotation:
    """Write a new token-signing key, signing from one read interval on; the current key
    becomes the previous one (its public half verifies, it signs until then)."""
    current, current_text = await _current_private_key(manager, JWT_PRIVATE_KEY, env_file=env_file)
    new = generate_private_key()
    new_kid, not_before = key_id(load_private_key(new)), _not_before(manager)
    # In this order: a gateway reading in between only ever signs with a key every gateway
    # verifies (the not-before names the new key, so it means nothing before that key).
    updates = {
        JWT_NOT_BEFORE: not_before_text(not_before, new_kid),
        JWT_PREVIOUS_PUBLIC_KEY: public_key_text(current),
        JWT_PREVIOUS_PRIVATE_KEY: current_text,
        JWT_PRIVATE_KEY: new,
    }
    written_to = await write_rotation(manager, updates, env_file=env_file)
    return Rotation(new_kid, key_id(current), written_to, int(not_before + 0.999))


async def rotate_assertion_key(manager: SecretsManager, *, env_file: Path) -> Rotation:
    """Write a new assertion key and its public half; the current public key becomes the
    previous one, which downstream services keep accepting."""
    current, current_text = await _current_private_key(
        manager, ASSERTION_PRIVATE_KEY, env_file=env_file
    )
    new = generate_private_key()
    new_kid, not_before = key_id(load_private_key(new)), _not_before(manager)
    updates = {
        # Public halves before the private key: gateways sign with it only after a delay,
        # but a crash between the writes must never leave a key nobody can verify.
        ASSERTION_NOT_BEFORE: not_before_text(not_before, new_kid),
        ASSERTION_PREVIOUS_PUBLIC_KEY: public_key_text(current),
        ASSERTION_PUBLIC_KEY: public_key_text(load_private_key(new)),
        ASSERTION_PREVIOUS_PRIVATE_KEY: current_text,
        ASSERTION_PRIVATE_KEY: new,
    }
    written_to = await write_rotation(manager, updates, env_file=env_file)
    return Rotation(new_kid, key_id(current), written_to, int(not_before + 0.999))


async def _current_private_key(
    manager: SecretsManager, name: str, *, env_file: Path
) -> tuple[Ed25519PrivateKey, str]:
    value = (await read_fresh(manager, [name], env_file=env_file))[name]
    if value is None:
        raise MissingSecretError(name, (), manager.consulted)
    try:
        return load_private_key(value.get_secret_value()), value.get_secret_value()
    except (KeyFormatError, ValueError, TypeError):
        raise SecretsConfigError(
            f"the current {name} is not an Ed25519 private key; rotate by writing a new one"
        ) from None
