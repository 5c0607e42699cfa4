"""TOTP (RFC 6238) codes, the sealing of their secrets, recovery codes and challenge ids."""

import base64
import hashlib
import hmac
import secrets
import time

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

MFA_KEY_SECRET = "PORTFOLIO_MFA_ENCRYPTION_KEY"  # noqa: S105  # nosec B105 - a secret's name
STEP_SECONDS = 30
DIGITS = 6
# One step either side of now: a phone clock a little off still works (pyotp's valid_window 1).
VALID_WINDOW = 1
RECOVERY_CODES = 10
_SEALED_PREFIX = "v1:"


class SealError(ValueError):
    """A sealed secret that this key cannot open (another key, or altered)."""


class SecretBox:
    """Seal TOTP secrets with AES-256-GCM under a key derived from the managed secret."""

    def __init__(self, key_material: SecretStr) -> None:
        # HKDF: any high-entropy text of the secrets store becomes a 256-bit key.
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"lct-mfa-totp-secret"
        ).derive(key_material.get_secret_value().encode())
        self._aead = AESGCM(key)

    def seal(self, secret: str, *, username: str) -> str:
        """Return the secret encrypted and bound to the account (stored as text)."""
        nonce = secrets.token_bytes(12)
        sealed = self._aead.encrypt(nonce, secret.encode(), _context(username))
        return _SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, sealed: str, *, username: str) -> str:
        """Return the secret of `seal`, or raise `SealError`."""
        if not sealed.startswith(_SEALED_PREFIX):
            raise SealError("unknown sealed-secret format")
        try:
            raw = base64.urlsafe_b64decode(sealed[len(_SEALED_PREFIX) :])
            return self._aead.decrypt(raw[:12], raw[12:], _context(username)).decode()
        except (InvalidTag, ValueError):
            raise SealError("the sealed secret does not open with this key") from None


def _context(username: str) -> bytes:
    # Bound to the account: a sealed secret copied to another row does not open.
    return f"totp:{username}".encode()


def new_secret() -> str:
    """Return a new random TOTP secret (base32, 160 bits)."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, *, username: str, issuer: str) -> str:
    """Return the `otpauth://` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=username, issuer_name=issuer
    )


def matching_step(secret: str, code: str, *, now: float | None = None) -> int | None:
    """Return the time step whose code `code` is (now, or one step either side), else None.

    Every candidate is compared, in constant time, so the timing tells nothing.
    """
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int((time.time() if now is None else now) // STEP_SECONDS)
    found = None
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected.encode(), code.encode()) and found is None:
            found = step
    return found


def new_recovery_codes() -> list[str]:
    """Return ten new recovery codes (`xxxx-xxxx-xxxx`, 60 random bits each)."""
    return [_recovery_code() for _ in range(RECOVERY_CODES)]


def _recovery_code() -> str:
    text = base64.b32encode(secrets.token_bytes(8)).decode().lower()[:12]
    return "-".join(text[i : i + 4] for i in range(0, 12, 4))


def recovery_digest(code: str) -> str:
    """Return the stored form of a recovery code: SHA-256 of its normalised text.

    A fast hash is enough: the code is random (60 bits), not a person's password.
    """
    normalised = code.strip().lower().replace("-", "").replace(" ", "")
    return hashlib.sha256(normalised.encode()).hexdigest()


def new_challenge() -> tuple[str, str]:
    """Return a new challenge id and the SHA-256 under which it is stored."""
    challenge = secrets.token_urlsafe(32)
    return challenge, challenge_digest(challenge)


def challenge_digest(challenge: str) -> str:
    """Return the stored form of a challenge id."""
    return hashlib.sha256(challenge.encode()).hexdigest()
