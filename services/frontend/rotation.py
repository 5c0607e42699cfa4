"""The rotation of SESSION_SECRET_KEY: when a new secret starts signing, and the ceremony.

A rotated session secret verifies at once in every frontend but signs (cookies, form passes,
sealed tokens) only once every frontend has read it. `rotate_session_secret` writes that time
with the secret (`SESSION_SECRET_KEY_NOT_BEFORE`: one read interval plus a margin after the
write, naming the secret by a fingerprint, never its value) and keeps the secret before as
`SESSION_PREVIOUS_SECRET_KEY`: a frontend that starts before that time signs with the
previous secret until then, like the running ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from shared.clock import epoch_seconds
from shared.secrets import SecretsManager
from shared.secrets.errors import MissingSecretError
from shared.secrets.rotate import write_rotation
from shared.secrets.watch import MIN_INTERVAL_SECONDS, SecretValues, read_fresh

# Secret names; not credentials.
SESSION_SECRET = "SESSION_SECRET_KEY"  # noqa: S105  # nosec B105
PREVIOUS_SESSION_SECRET = "SESSION_PREVIOUS_SECRET_KEY"  # noqa: S105  # nosec B105
NOT_BEFORE = "SESSION_SECRET_KEY_NOT_BEFORE"  # nosec B105
# Covers the rotation's writes and one read of the store, and clocks a second apart.
ACTIVATION_MARGIN_SECONDS = 2.0


def fingerprint(secret: SecretStr) -> str:
    """Return a name for a session secret that tells nothing about it (HMAC, 64 bits)."""
    return hmac.new(
        secret.get_secret_value().encode(), b"lct-session-secret-id", hashlib.sha256
    ).hexdigest()[:16]


def not_before_of(value: SecretStr | None, secret: SecretStr) -> float | None:
    """Return when `secret` starts signing; None unless `value` is about that secret."""
    if value is None:
        return None
    at, _, named = value.get_secret_value().strip().partition(" ")
    if not hmac.compare_digest(named.strip().encode(), fingerprint(secret).encode()):
        return None
    try:
        return float(int(at))
    except ValueError:
        return None


def startup_secret(
    current: SecretStr, previous: SecretStr | None, not_before: SecretStr | None, *, now: float
) -> tuple[SecretStr, float | None]:
    """Return the secret a starting frontend signs with and, when that is the previous one,
    the time from which `current` takes over."""
    at = not_before_of(not_before, current)
    if at is None or at <= now or previous is None:
        return current, None
    return previous, at


def activation(values: SecretValues, fallback: float) -> float:
    """Return when the session secret in `values` signs: its not-before, else `fallback`."""
    secret = values.get(SESSION_SECRET)
    at = not_before_of(values.get(NOT_BEFORE), secret) if secret is not None else None
    return at if at is not None else fallback


@dataclass(frozen=True, slots=True)
class Rotation:
    """What a rotation wrote: fingerprints (never a secret), where, and from when it signs."""

    new: str
    previous: str
    written_to: str
    not_before: int


async def rotate_session_secret(manager: SecretsManager, *, env_file: Path) -> Rotation:
    """Write a new session secret, signing from one read interval on; the current one
    becomes SESSION_PREVIOUS_SECRET_KEY, still accepted everywhere."""
    current = (await read_fresh(manager, [SESSION_SECRET], env_file=env_file))[SESSION_SECRET]
    if current is None:
        raise MissingSecretError(SESSION_SECRET, (), manager.consulted)
    new = SecretStr(secrets.token_urlsafe(48))
    interval = max(manager.settings.secrets_cache_ttl_seconds, MIN_INTERVAL_SECONDS)
    at = int(epoch_seconds() + interval + ACTIVATION_MARGIN_SECONDS + 0.999)
    # In this order: a frontend reading in between signs only with a secret all accept.
    updates = {
        NOT_BEFORE: f"{at} {fingerprint(new)}",
        PREVIOUS_SESSION_SECRET: current.get_secret_value(),
        SESSION_SECRET: new.get_secret_value(),
    }
    written_to = await write_rotation(manager, updates, env_file=env_file)
    return Rotation(fingerprint(new), fingerprint(current), written_to, at)
