"""Password hashing (Argon2id, legacy bcrypt verified and upgraded) and the password policy."""

import contextlib
import functools
import os
import re
import secrets
import string
import threading
import unicodedata
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

import anyio
import anyio.to_thread
from pwdlib import PasswordHash
from pwdlib.exceptions import PwdlibError
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from zxcvbn import zxcvbn

from services.portfolio import metrics
from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import IdentityBusyError, WeakPasswordError

T = TypeVar("T")

# A password naming the product is among the first an attacker tries against it.
PRODUCT_NAME = "legacycointrader"
_NOT_ALPHANUMERIC = re.compile(r"[\W_]+")
# The estimator's cost grows much faster than the length (a 1024-character password takes
# it over a minute), so it judges the first this many characters: its own default limit.
# A password strong in its first 72 characters stays strong whatever follows.
ESTIMATED_CHARACTERS = 72
Ts = TypeVarTuple("Ts")


def _lower_priority(niceness: int) -> None:
    # Per thread on Linux (Argon2's lane threads inherit it); elsewhere, or when refused,
    # the hash runs at normal priority.
    if niceness:
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class HashingSlots:
    """Run at most `size` password hashes at once; `queue` more wait up to `max_wait` seconds.

    An Argon2id run holds its whole memory cost while it runs, so these slots, not the
    number of callers, bound the process's memory. A caller finding the queue full, or
    waiting past `max_wait`, gets `IdentityBusyError` at once instead of hanging.
    """

    def __init__(self, *, size: int, queue: int, max_wait: float, niceness: int = 0) -> None:
        self.size = size
        self._queue = queue
        self._max_wait = max_wait
        self._free = size
        self._waiters: deque[anyio.Event] = deque()
        # Threads of their own: hashing never takes the default thread limiter's tokens,
        # which the app's other blocking work (sync dependencies) needs during a storm.
        self._threads = anyio.CapacityLimiter(size)
        # The work itself runs on threads of its own at `niceness`, so that in a storm it
        # takes the cores other requests leave idle instead of competing with them; the
        # anyio thread waits for it, so a cancelled caller still holds its slot.
        self._pool = ThreadPoolExecutor(
            max_workers=size,
            thread_name_prefix="password-hashing",
            initializer=_lower_priority,
            initargs=(niceness,),
        )

    @property
    def running(self) -> int:
        """How many slots are taken."""
        return self.size - self._free

    @property
    def waiting(self) -> int:
        """How many callers wait for a slot."""
        return len(self._waiters)

    async def run(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        """Reserve a slot, then run `func(*args)` on a worker thread."""
        await self._acquire()
        try:
            # Not abandoned on cancellation: the slot is held until the hash ends.
            return await anyio.to_thread.run_sync(self._on_pool, func, *args, limiter=self._threads)
        finally:
            self._release()

    def _on_pool(self, func: Callable[[*Ts], T], *args: *Ts) -> T:
        return self._pool.submit(_timed, functools.partial(func, *args)).result()

    async def _acquire(self) -> None:
        if self._free:
            self._free -= 1
            return
        if len(self._waiters) >= self._queue:
            metrics.PASSWORD_HASHES_REFUSED.inc()
            raise IdentityBusyError(self._max_wait)
        granted = anyio.Event()
        self._waiters.append(granted)
        try:
            with (
                metrics.PASSWORD_HASHES_WAITING.track_inprogress(),
                anyio.fail_after(self._max_wait),
            ):
                await granted.wait()
        except TimeoutError:
            metrics.PASSWORD_HASHES_REFUSED.inc()
            self._abandon(granted)
            raise IdentityBusyError(self._max_wait) from None
        except BaseException:
            self._abandon(granted)
            raise

    def _abandon(self, granted: anyio.Event) -> None:
        if granted.is_set():
            self._release()  # handed a slot just as the wait ended: pass it on
        else:
            self._waiters.remove(granted)

    def _release(self) -> None:
        # Straight to the longest waiter, so a newcomer never overtakes the queue.
        if self._waiters:
            self._waiters.popleft().set()
        else:
            self._free += 1


def _timed(work: Callable[[], T]) -> T:
    # Timed on the hashing thread itself: the hash, not the wait for a slot or a thread.
    with metrics.PASSWORD_HASHES_RUNNING.track_inprogress(), metrics.PASSWORD_HASH_SECONDS.time():
        return work()


class PasswordHasher:
    """Hash and verify passwords on worker threads, never on the event loop, in bounded
    number (`HashingSlots`)."""

    def __init__(self, settings: PortfolioSettings) -> None:
        self.slots = HashingSlots(
            size=settings.hashing_slots(),
            queue=settings.hashing_queue,
            max_wait=settings.hashing_max_wait_seconds,
            niceness=settings.hashing_niceness,
        )
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
        return await self.slots.run(self._hash.hash, password)

    async def verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        """Check a password; also return a new hash when the stored one is outdated."""
        return await self.slots.run(self._verify, password, stored_hash)

    async def verify_dummy(self, password: str) -> None:
        """Spend the work of one check, for callers with no account to check against."""
        # Hashing with the primary parameters costs what verifying a stored hash costs.
        await self.slots.run(self._dummy_check, password)

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


def one_time_password(*, avoid: str = "") -> str:
    """Return a random 24-character password of letters, digits and `-_.!` (about 145 bits),
    with one of each kind so no composition rule anywhere refuses it, never containing
    `avoid` (the username)."""
    punctuation = "-_.!"
    alphabet = string.ascii_letters + string.digits + punctuation
    while True:
        password = "".join(secrets.choice(alphabet) for _ in range(24))
        if (
            any(c.islower() for c in password)
            and any(c.isupper() for c in password)
            and any(c.isdigit() for c in password)
            and any(c in punctuation for c in password)
            and not (avoid and avoid.casefold() in password.casefold())
        ):
            return password


def refuse_control_characters(password: str) -> None:
    """Refuse a password holding NUL or another control character (Unicode category Cc).

    They cannot be typed at a login form, a NUL ends the string in C code that may handle
    the password later, and a stray one is almost always a pasting or scripting mistake.
    """
    # Which one and where is not said: the message must tell nothing about the password.
    if any(unicodedata.category(char) == "Cc" for char in password):
        raise WeakPasswordError(
            "the password contains a control character (such as NUL, a tab or a line "
            "break); use printable characters only"
        )


def check_password_policy(
    password: str,
    settings: PortfolioSettings,
    *,
    username: str | None = None,
    current: str | None = None,
) -> None:
    """Refuse a new password that is too short or too long, contains the username or the
    product name, is easy to guess (zxcvbn score below `password_min_score`), or is the
    same as the current one. No composition rules (ASVS V6.2).

    Takes up to some tens of milliseconds: async callers run it on a worker thread.
    """
    if not isinstance(password, str):
        raise WeakPasswordError("the password must be a string")
    try:
        password.encode()
    except UnicodeEncodeError:
        raise WeakPasswordError(
            "the password contains characters that are not valid Unicode"
        ) from None
    refuse_control_characters(password)
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
    folded = unicodedata.normalize("NFKC", password).casefold()
    if username and unicodedata.normalize("NFKC", username).casefold() in folded:
        raise WeakPasswordError("the password must not contain the username")
    # "Legacy Coin Trader" and "legacy-coin-trader" name the product just as well.
    if PRODUCT_NAME in _NOT_ALPHANUMERIC.sub("", folded):
        raise WeakPasswordError("the password must not contain the product name")
    _refuse_guessable(password, settings.password_min_score, username)


def _refuse_guessable(password: str, min_score: int, username: str | None) -> None:
    hints = [PRODUCT_NAME, "legacy", "coin", "trader", *([username] if username else [])]
    estimate = zxcvbn(password[:ESTIMATED_CHARACTERS], user_inputs=hints)
    score = int(estimate["score"])
    if score >= min_score:
        return
    # The estimator's warning names a pattern ("a common password"), never the password.
    warning = str(estimate["feedback"].get("warning") or "").rstrip(".")
    why = f": {warning[:1].lower()}{warning[1:]}" if warning else ""
    raise WeakPasswordError(
        f"the password is too easy to guess (strength {score} of 4, at least {min_score} "
        f"needed){why}; a longer passphrase of uncommon words is stronger"
    )
