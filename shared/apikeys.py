"""API keys as every service sees them: stored, cached and looked up by their SHA-256 digest,
shown by a short public id, never in clear."""

import hashlib

KEY_ID_LENGTH = 16


def digest(api_key: str) -> str:
    """Return the SHA-256 hex digest an API key is stored, cached and looked up by."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def key_id(key_digest: str) -> str:
    """Return the public id of an API key: the first 16 hex characters of its digest."""
    return key_digest[:KEY_ID_LENGTH]
