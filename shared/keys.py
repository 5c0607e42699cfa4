"""Ed25519 signing keys as the secrets layer hands them over: PEM or base64url raw bytes."""

import base64
import hashlib
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyFormatError(ValueError):
    """A key value that is neither PEM nor 32 base64url-encoded bytes."""


def _b64decode(value: str) -> bytes:
    padded = value.strip() + "=" * (-len(value.strip()) % 4)
    try:
        return base64.urlsafe_b64decode(padded)
    except ValueError as exc:
        raise KeyFormatError("key is not valid base64url") from exc


def b64encode(raw: bytes) -> str:
    """Encode bytes as unpadded base64url."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def generate_private_key() -> str:
    """Return a new Ed25519 private key as base64url raw bytes (the `.env` form)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return b64encode(raw)


def load_private_key(value: str) -> Ed25519PrivateKey:
    """Parse an Ed25519 private key from PEM or base64url raw bytes."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_private_key(text.encode(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFormatError("PEM key is not an Ed25519 private key")
        return key
    raw = _b64decode(text)
    if len(raw) != 32:
        raise KeyFormatError(f"Ed25519 private key must be 32 bytes, got {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(value: str) -> Ed25519PublicKey:
    """Parse an Ed25519 public key from PEM or base64url raw bytes."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise KeyFormatError("PEM key is not an Ed25519 public key")
        return key
    raw = _b64decode(text)
    if len(raw) != 32:
        raise KeyFormatError(f"Ed25519 public key must be 32 bytes, got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the public half as base64url raw bytes."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return b64encode(
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def public_jwk(key: Ed25519PrivateKey | Ed25519PublicKey) -> dict[str, str]:
    """Return the public key as an OKP JWK with its RFC 7638 thumbprint as `kid`."""
    x = public_key_text(key)
    thumbprint_input = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = b64encode(hashlib.sha256(thumbprint_input.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": "EdDSA", "use": "sig"}


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the RFC 7638 thumbprint of the key, used as the JWT `kid`."""
    return public_jwk(key)["kid"]
