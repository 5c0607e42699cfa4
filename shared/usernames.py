"""Usernames: the one spelling the identity store keeps, the gateway throttles and logs by.

Every service folds a presented name the same way (NFKC, trimmed, lower case), so the
full-width or upper-case spelling of an account is that account everywhere: in the store,
in the gateway's throttle keys and in the access log.
"""

import hashlib
import re
import unicodedata
from typing import Final

USERNAME_PATTERN: Final = re.compile(r"[a-z0-9._@-]{3,64}")
USERNAME_RULE: Final = "3 to 64 characters of a-z, 0-9, '.', '_', '@' and '-'"
# Longer input is refused unread: NFKC can multiply a string's length, and no valid name
# comes near this even spelled in full-width characters with padding around it.
MAX_PRESENTED_LENGTH: Final = 256
# What stands for a name no account can have: a character no valid name holds, then a digest.
_INVALID_MARK: Final = "~"


class InvalidUsernameError(ValueError):
    """A presented name that no account can have."""

    def __init__(self) -> None:
        super().__init__(f"the username must be {USERNAME_RULE}")


def _fold(presented: str) -> str:
    return unicodedata.normalize("NFKC", presented).strip().lower()


def normalize_username(presented: object) -> str:
    """Return the canonical spelling of a username, or raise `InvalidUsernameError`."""
    if not isinstance(presented, str) or len(presented) > MAX_PRESENTED_LENGTH:
        raise InvalidUsernameError()
    name = _fold(presented)
    if not USERNAME_PATTERN.fullmatch(name):
        raise InvalidUsernameError()
    return name


def username_label(presented: str) -> str:
    """Return the canonical spelling for a key or a log line; never the raw text of a name
    no account can have (it may be huge or hostile), but a short digest of it instead."""
    try:
        return normalize_username(presented)
    except InvalidUsernameError:
        folded = _fold(presented[:MAX_PRESENTED_LENGTH])
        # surrogatepass: a JSON body may carry a lone surrogate, which plain UTF-8 refuses.
        digest = hashlib.sha256(folded.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{_INVALID_MARK}{digest[:32]}"
