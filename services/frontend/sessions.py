"""Server-side browser sessions: the cookie carries a signed random id, nothing else.

A session exists only once a password checked out (the forms before that carry a signed
pass, see `csrf.py`), so every session belongs to a user: one user holds at most
`max_sessions_per_user` of them (the oldest sign-in ends first), and a full store drops the
least recently used session, never the one being created.

The memory store here keeps sessions in one process: several frontend processes behind a
load balancer share them through `redis_sessions.RedisSessionStore`
(`FRONTEND_SESSION_URL`), the same `SessionStore` interface.
"""

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from pydantic import SecretStr

Clock = Callable[[], float]

COOKIE_NAME = "lct_session"
# The __Host- prefix makes the browser refuse the cookie unless it is Secure, host-only
# and on path /, so a sibling subdomain cannot plant a session id.
SECURE_COOKIE_NAME = "__Host-lct_session"


def new_token() -> str:
    """Return 32 random bytes, URL-safe: a session id or a CSRF token."""
    return secrets.token_urlsafe(32)


@dataclass(slots=True)
class Session:
    """What the frontend remembers about one browser; kept server-side only."""

    id: str
    csrf_token: str = field(repr=False)
    created_at: float
    last_seen_at: float
    access_token: SecretStr | None = None
    token_expires_at: float | None = None
    username: str | None = None
    roles: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    flash: str | None = None

    @classmethod
    def signed_in(
        cls,
        now: float,
        *,
        username: str,
        access_token: str,
        token_expires_at: float,
        roles: tuple[str, ...],
        services: tuple[str, ...],
        flash: str | None = None,
    ) -> "Session":
        """Return a new signed-in session: fresh id and CSRF token, holding a gateway token."""
        return cls(
            id=new_token(),
            csrf_token=new_token(),
            created_at=now,
            last_seen_at=now,
            access_token=SecretStr(access_token),
            token_expires_at=token_expires_at,
            username=username,
            roles=roles,
            services=services,
            flash=flash,
        )

    @property
    def is_authenticated(self) -> bool:
        """Tell whether the session holds a gateway token."""
        return self.access_token is not None

    def bearer(self) -> str:
        """Return the gateway token; only authenticated sessions have one."""
        if self.access_token is None:
            raise ValueError("session holds no gateway token")
        return self.access_token.get_secret_value()

    def pop_flash(self) -> str | None:
        """Return the one-time message and forget it."""
        message, self.flash = self.flash, None
        return message


class SessionStore(Protocol):
    """Where sessions live; `get` never returns one that is idle or too old."""

    idle_timeout: int
    lifetime: int

    async def create(
        self,
        *,
        username: str,
        access_token: str,
        token_expires_at: float,
        roles: tuple[str, ...],
        services: tuple[str, ...],
        flash: str | None = None,
    ) -> Session:
        """Start a signed-in session (fresh id and CSRF token) holding a gateway token."""
        ...

    async def get(self, session_id: str) -> Session | None:
        """Return a live session, or None when it is unknown or expired."""
        ...

    async def save(self, session: Session, *, touch: bool = True) -> None:
        """Store changes; `touch` counts this as activity for the idle timeout."""
        ...

    async def delete(self, session_id: str) -> None:
        """Forget a session."""
        ...

    async def count(self) -> int:
        """Return how many sessions are live (every process's, for a shared store)."""
        ...

    def idle_deadline(self, session: Session) -> float:
        """Return when the session ends unless it is used again."""
        ...


class MemorySessionStore:
    """Sessions in this process's memory, least recently used first."""

    def __init__(
        self,
        *,
        idle_timeout: int,
        lifetime: int,
        max_sessions: int = 10000,
        max_sessions_per_user: int = 5,
        clock: Clock = time.time,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.max_sessions = max_sessions
        self.max_sessions_per_user = max_sessions_per_user
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # Each user's session ids, oldest sign-in first.
        self._by_user: dict[str, dict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    async def create(
        self,
        *,
        username: str,
        access_token: str,
        token_expires_at: float,
        roles: tuple[str, ...],
        services: tuple[str, ...],
        flash: str | None = None,
    ) -> Session:
        """Start a signed-in session; the user's oldest end beyond the per-user cap."""
        now = self._clock()
        self._sweep(now)
        # Room is made before the new session is added, so it can never be the one to go.
        while len(self._by_user.get(username, ())) >= self.max_sessions_per_user:
            self._remove(next(iter(self._by_user[username])))
        while len(self._sessions) >= self.max_sessions:
            self._remove(next(iter(self._sessions)))
        session = Session.signed_in(
            now,
            username=username,
            access_token=access_token,
            token_expires_at=token_expires_at,
            roles=roles,
            services=services,
            flash=flash,
        )
        self._sessions[session.id] = session
        self._by_user.setdefault(username, {})[session.id] = None
        return replace(session)

    async def get(self, session_id: str) -> Session | None:
        """Return a live session (a copy: changes count once saved), or None."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if self._expired(session, self._clock()):
            self._remove(session_id)
            return None
        return replace(session)

    async def save(self, session: Session, *, touch: bool = True) -> None:
        """Store changes; a deleted or expired session stays gone, its user stays its own."""
        stored = self._sessions.get(session.id)
        if stored is None:
            return
        if touch:
            session.last_seen_at = self._clock()
            self._sessions.move_to_end(session.id)
        self._sessions[session.id] = replace(session, username=stored.username)

    async def delete(self, session_id: str) -> None:
        """Forget a session."""
        self._remove(session_id)

    async def count(self) -> int:
        """Return how many sessions are live."""
        self._sweep(self._clock())
        return len(self._sessions)

    def idle_deadline(self, session: Session) -> float:
        """Return when the session ends unless it is used again."""
        return min(session.last_seen_at + self.idle_timeout, session.created_at + self.lifetime)

    def _remove(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is None or session.username is None:
            return
        mine = self._by_user.get(session.username, {})
        mine.pop(session_id, None)
        if not mine:
            self._by_user.pop(session.username, None)

    def _expired(self, session: Session, now: float) -> bool:
        return now >= self.idle_deadline(session)

    def _sweep(self, now: float) -> None:
        # Ordered by last activity, so idle sessions sit at the front.
        while self._sessions:
            oldest_id, oldest = next(iter(self._sessions.items()))
            if not self._expired(oldest, now):
                break
            self._remove(oldest_id)


class DerivedKeys:
    """HMAC keys derived from the session secret for one purpose: the current one signs, a
    rotated one verifies at once and signs from its activation time on (so every frontend
    knows it before a cookie signed with it reaches them), the one before still verifies."""

    def __init__(self, secret: SecretStr, purpose: bytes, *, clock: Clock = time.time) -> None:
        # A key derived for this one purpose, so the raw secret signs nothing directly.
        self._purpose = purpose
        self._clock = clock
        self._current = self._derive(secret)
        self._pending: tuple[bytes, float] | None = None
        self.previous: bytes | None = None
        # From SESSION_PREVIOUS_SECRET_KEY: what a frontend started after a rotation accepts.
        self._stored_previous: bytes | None = None

    def _derive(self, secret: SecretStr) -> bytes:
        return hmac.new(secret.get_secret_value().encode(), self._purpose, hashlib.sha256).digest()

    @property
    def current(self) -> bytes:
        """Return the key that signs now."""
        pending = self._pending
        if pending is not None and self._clock() >= pending[1]:
            self.previous, self._current, self._pending = self._current, pending[0], None
        return self._current

    def rotate(self, secret: SecretStr, *, activate_at: float = 0.0) -> None:
        """Verify with a key from `secret` now and sign with it from `activate_at` on."""
        new = self._derive(secret)
        if hmac.compare_digest(new, self.current):
            self._pending = None
        elif self._pending is None or not hmac.compare_digest(new, self._pending[0]):
            self._pending = (new, activate_at)

    def verifying(self) -> tuple[bytes, ...]:
        """Return the keys a signature may come from, current first."""
        keys = [self.current]
        if self._pending is not None:
            keys.append(self._pending[0])
        if self.previous is not None:
            keys.append(self.previous)
        if self._stored_previous is not None and self._stored_previous not in keys:
            keys.append(self._stored_previous)
        return tuple(keys)

    def accept_previous(self, secret: SecretStr | None) -> None:
        """Also verify with a key from `secret` (SESSION_PREVIOUS_SECRET_KEY); None: stop."""
        self._stored_previous = self._derive(secret) if secret is not None else None


def signature_matches(keys: DerivedKeys, message: str, signature: str) -> bool:
    """Tell whether `signature` is the base64url HMAC-SHA256 of `message` under any key."""
    matched = False
    for key in keys.verifying():
        expected = hmac_b64(key, message)
        # Bytes, not str: compare_digest refuses non-ASCII text, which a cookie may hold.
        # Every key is tried, so the time taken does not tell which one matched.
        matched |= hmac.compare_digest(signature.encode(), expected.encode())
    return matched


def hmac_b64(key: bytes, message: str) -> str:
    """Return the unpadded base64url HMAC-SHA256 of `message`."""
    digest = hmac.new(key, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class CookieSigner:
    """Sign session ids with the session secret so a forged cookie is told apart cheaply."""

    def __init__(self, secret: SecretStr) -> None:
        self._keys = DerivedKeys(secret, b"lct-frontend-session-cookie")

    def rotate(self, secret: SecretStr, *, activate_at: float = 0.0) -> None:
        """Sign with the rotated secret from `activate_at` on; cookies of the one before
        still count."""
        self._keys.rotate(secret, activate_at=activate_at)

    def accept_previous(self, secret: SecretStr | None) -> None:
        """Also accept cookies signed with `secret` (SESSION_PREVIOUS_SECRET_KEY)."""
        self._keys.accept_previous(secret)

    def sign(self, session_id: str) -> str:
        """Return the cookie value for a session id."""
        return f"{session_id}.{hmac_b64(self._keys.current, session_id)}"

    def unsign(self, value: str) -> str | None:
        """Return the session id of a genuine cookie value, else None."""
        session_id, _, signature = value.rpartition(".")
        if not session_id or not signature_matches(self._keys, session_id, signature):
            return None
        return session_id


def csrf_matches(session: Session, submitted: str | None) -> bool:
    """Compare a submitted CSRF token with the session's in constant time."""
    if not submitted:
        return False
    return hmac.compare_digest(submitted.encode(), session.csrf_token.encode())
