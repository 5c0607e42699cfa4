"""Password hashing (Argon2id, legacy bcrypt verified and upgraded) and the password policy."""

import contextlib
import secrets

import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher

from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import WeakPasswordError


class PasswordHasher:
    """Hash and verify passwords on worker threads, never on the event loop."""

    def __init__(self, settings: PortfolioSettings) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    time_cost=settings.argon2_time_cost,
                    memory_cost=settings.argon2_memory_cost,
                    parallelism=settings.argon2_parallelism,
                ),
                BcryptHasher(),
            )
        )

    async def hash(self, password: str) -> str:
        """Return an Argon2id hash of the password."""
        return await anyio.to_thread.run_sync(self._hash.hash, password)

    async def verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        """Check a password; also return a new hash when the stored one is outdated."""
        return await anyio.to_thread.run_sync(self._verify, password, stored_hash)

    async def verify_dummy(self, password: str) -> None:
        """Spend the work of one check, for callers with no account to check against."""
        # Hashing with the primary parameters costs what verifying a stored hash costs.
        await anyio.to_thread.run_sync(self._dummy_check, password)

    def _dummy_check(self, password: str) -> None:
        # A password that cannot be hashed (a lone surrogate) still gets the same answer.
        with contextlib.suppress(ValueError):
            self._hash.hash(password)

    def _verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        try:
            return self._hash.verify_and_update(password, stored_hash)
        except (PwdlibError, ValueError):
            # An unrecognised hash, or bcrypt refusing a password over 72 bytes: no match.
            return False, None


def check_password_policy(
    password: str, settings: PortfolioSettings, *, current: str | None = None
) -> None:
    """Refuse a new password that is too short, too long or the same as the current one."""
    if not isinstance(password, str):
        raise WeakPasswordError("the password must be a string")
    try:
        password.encode()
    except UnicodeEncodeError:
        raise WeakPasswordError(
            "the password contains characters that are not valid Unicode"
        ) from None
    if len(password) < settings.password_min_length:
        raise WeakPasswordError(
            f"the password must be at least {settings.password_min_length} characters long"
        )
    if len(password) > settings.password_max_length:
        raise WeakPasswordError(
            f"the password must be at most {settings.password_max_length} characters long"
        )
    if not password.strip():
        raise WeakPasswordError("the password must not be only whitespace")
    if current is not None and secrets.compare_digest(password.encode(), current.encode()):
        raise WeakPasswordError("the new password must differ from the current one")
