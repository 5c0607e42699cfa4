"""API keys: what a new key must look like, and how a random one is made (the digest a key is
stored and looked up by is `shared.apikeys`)."""

import re
import secrets

from services.portfolio.errors import InvalidInputError

MIN_LENGTH = 32
MAX_LENGTH = 1024
# Printable ASCII without spaces: the key travels in an X-API-Key header.
PATTERN = re.compile(r"[\x21-\x7e]+")


def generate() -> str:
    """Return a new random API key (64 hex characters, 256 bits)."""
    return secrets.token_hex(32)


def has_valid_form(api_key: object) -> bool:
    """Tell whether a presented key could be a key at all (no lookup needed otherwise)."""
    return (
        isinstance(api_key, str)
        and MIN_LENGTH <= len(api_key) <= MAX_LENGTH
        and PATTERN.fullmatch(api_key) is not None
    )


def check(api_key: object) -> None:
    """Refuse a new API key that is too short, too long or not printable ASCII."""
    if not isinstance(api_key, str):
        raise InvalidInputError("the API key must be a string")
    if len(api_key) < MIN_LENGTH:
        raise InvalidInputError(f"the API key must be at least {MIN_LENGTH} characters")
    if len(api_key) > MAX_LENGTH:
        raise InvalidInputError(f"the API key must be at most {MAX_LENGTH} characters")
    if not PATTERN.fullmatch(api_key):
        raise InvalidInputError("the API key must be printable ASCII without spaces")
