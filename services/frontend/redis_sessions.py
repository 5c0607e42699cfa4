"""Browser sessions in Redis, shared by every frontend process (`FRONTEND_SESSION_URL`).

Each session is one Redis hash that expires with the session (idle timeout or absolute
lifetime, whichever comes first), so an idle session ends on every replica at once. The key
is a digest of the session id, never the id itself: whoever reads Redis cannot rebuild a
cookie. The gateway token is encrypted (AES-GCM, a key derived from the session secret for
this one purpose, the session's key as associated data), so a Redis dump holds no usable
token. A rotated session secret seals from its activation on, while tokens sealed with the
secret before keep opening (and are sealed again with the new one when the session is
saved). No password is ever part of a session.

Redis that cannot be reached makes the call raise `SessionStoreUnavailable`: the browser gets
a clear error page, never a crash and never a session it did not sign in to.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import time
from typing import Any

import redis.asyncio as redis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr
from redis.exceptions import RedisError

from services.frontend.errors import SessionStoreUnavailable
from services.frontend.sessions import Clock, DerivedKeys, Session

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "lct:frontend:"
_GLOB = re.compile(r"([*?\[\]\\])")
_NONCE_BYTES = 12

# Create: make room in the user's list (sessions already gone leave first, then the oldest
# sign-in), then store the session. One script, so concurrent sign-ins of one user cannot
# both slip under the cap. KEYS: session key, user list. ARGV: data, username, expire-at ms,
# created ms, cap, key prefix, digest, list expire-at ms.
_CREATE = """
local cap = tonumber(ARGV[5])
for _, member in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  if redis.call('EXISTS', ARGV[6] .. 'session:' .. member) == 0 then
    redis.call('ZREM', KEYS[2], member)
  end
end
local count = redis.call('ZCARD', KEYS[2])
if count >= cap then
  local old = redis.call('ZRANGE', KEYS[2], 0, count - cap)
  for _, member in ipairs(old) do
    redis.call('DEL', ARGV[6] .. 'session:' .. member)
    redis.call('ZREM', KEYS[2], member)
  end
end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'username', ARGV[2])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[7])
redis.call('PEXPIREAT', KEYS[2], ARGV[8])
return 1
"""
# Save: only a session that still exists (a logout on another replica stays a logout).
# KEYS: session key. ARGV: data, expire-at ms (empty: keep the expiry).
_SAVE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
if ARGV[2] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[2]) end
return 1
"""


class SealingKeys(DerivedKeys):
    """AES-256 keys derived from the session secret (HKDF-SHA256, the purpose as `info`),
    rotated like the signing keys: the current one seals, the others still open."""

    def _derive(self, secret: SecretStr) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=self._purpose).derive(
            secret.get_secret_value().encode()
        )


class TokenCipher:
    """Encrypt the gateway token of a session for storage outside this process."""

    def __init__(self, secret: SecretStr, *, clock: Clock = time.time) -> None:
        self._keys = SealingKeys(secret, b"lct-frontend-session-token", clock=clock)

    def rotate(self, secret: SecretStr, *, activate_at: float = 0.0) -> None:
        """Open with a key from the rotated secret now and seal with it from `activate_at`
        on; tokens sealed with the key before keep opening until the next rotation."""
        self._keys.rotate(secret, activate_at=activate_at)

    def accept_previous(self, secret: SecretStr | None) -> None:
        """Also open tokens sealed with `secret` (SESSION_PREVIOUS_SECRET_KEY)."""
        self._keys.accept_previous(secret)

    def encrypt(self, token: str, *, bound_to: str) -> str:
        """Return the token sealed to one session key."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = AESGCM(self._keys.current).encrypt(nonce, token.encode(), bound_to.encode())
        return base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, sealed: str, *, bound_to: str) -> str | None:
        """Return the token, or None when it was sealed by another key or for another session."""
        try:
            raw = base64.urlsafe_b64decode(sealed.encode())
        except ValueError:
            return None
        for key in self._keys.verifying():
            try:
                opened = AESGCM(key).decrypt(
                    raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], bound_to.encode()
                )
            except (InvalidTag, ValueError):
                continue
            return opened.decode()
        return None


def session_digest(session_id: str) -> str:
    """Return what names a session in Redis: a digest of its id, never the id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


class RedisSessionStore:
    """Sessions in Redis; every frontend process pointed at it shares sign-in and sign-out."""

    def __init__(
        self,
        url: str,
        *,
        secret: SecretStr,
        idle_timeout: int,
        lifetime: int,
        max_sessions_per_user: int = 5,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
        clock: Clock = time.time,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.lifetime = lifetime
        self.max_sessions_per_user = max_sessions_per_user
        self._prefix = prefix
        self._clock = clock
        # Public: the secret watcher hands it a rotated session secret.
        self.cipher = TokenCipher(secret, clock=clock)
        self._redis = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True
        )
        self._create = self._redis.register_script(_CREATE)
        self._save = self._redis.register_script(_SAVE)
        self._down = False

    async def close(self) -> None:
        """Close the connection pool."""
        await self._redis.aclose()

    async def ping(self) -> None:
        """Raise `SessionStoreUnavailable` unless Redis answers."""
        await self._call(self._redis.ping())

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
        session = Session.signed_in(
            now,
            username=username,
            access_token=access_token,
            token_expires_at=token_expires_at,
            roles=roles,
            services=services,
            flash=flash,
        )
        digest = session_digest(session.id)
        await self._call(
            self._create(
                keys=[self._session_key(digest), self._user_key(username)],
                args=[
                    self._encode(session, digest),
                    username,
                    _ms(self.idle_deadline(session)),
                    _ms(now),
                    self.max_sessions_per_user,
                    self._prefix,
                    digest,
                    _ms(now + self.lifetime),
                ],
            )
        )
        return session

    async def get(self, session_id: str) -> Session | None:
        """Return a live session, or None when it is unknown, expired or unreadable."""
        digest = session_digest(session_id)
        stored: dict[str, str] = await self._call(self._redis.hgetall(self._session_key(digest)))
        if not stored or "data" not in stored or "username" not in stored:
            return None
        session = self._decode(session_id, digest, stored["data"], stored["username"])
        if session is None or self._clock() >= self.idle_deadline(session):
            return None
        return session

    async def save(self, session: Session, *, touch: bool = True) -> None:
        """Store changes; a deleted or expired session stays gone, its user stays its own."""
        if touch:
            session.last_seen_at = self._clock()
        digest = session_digest(session.id)
        await self._call(
            self._save(
                keys=[self._session_key(digest)],
                args=[
                    self._encode(session, digest),
                    _ms(self.idle_deadline(session)) if touch else "",
                ],
            )
        )

    async def delete(self, session_id: str) -> None:
        """Forget a session on every replica."""
        digest = session_digest(session_id)
        key = self._session_key(digest)
        username = await self._call(self._redis.hget(key, "username"))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if username:
                pipe.zrem(self._user_key(username), digest)
            await self._call(pipe.execute())

    def idle_deadline(self, session: Session) -> float:
        """Return when the session ends unless it is used again."""
        return min(session.last_seen_at + self.idle_timeout, session.created_at + self.lifetime)

    async def count(self) -> int:
        """Return how many sessions are live in Redis (every frontend's); one SCAN, for a
        scrape every few seconds, never a request."""
        # The prefix is the operator's: its glob characters match themselves only.
        pattern = _GLOB.sub(r"\\\1", self._prefix) + "session:*"
        total = 0
        try:
            async for _ in self._redis.scan_iter(match=pattern, count=1000):
                total += 1
        except (RedisError, OSError):
            raise SessionStoreUnavailable() from None
        return total

    def _session_key(self, digest: str) -> str:
        return f"{self._prefix}session:{digest}"

    def _user_key(self, username: str) -> str:
        return f"{self._prefix}user:{username}"

    def _encode(self, session: Session, digest: str) -> str:
        token = session.access_token.get_secret_value() if session.access_token else None
        return json.dumps(
            {
                "csrf": session.csrf_token,
                "created": session.created_at,
                "seen": session.last_seen_at,
                "token": self.cipher.encrypt(token, bound_to=digest) if token else None,
                "token_expires": session.token_expires_at,
                "roles": list(session.roles),
                "services": list(session.services),
                "flash": session.flash,
            }
        )

    def _decode(self, session_id: str, digest: str, data: str, username: str) -> Session | None:
        try:
            fields: dict[str, Any] = json.loads(data)
            sealed = fields["token"]
            token = self.cipher.decrypt(sealed, bound_to=digest) if sealed else None
            if sealed and token is None:
                # Sealed under another session secret: the session cannot be used.
                return None
            return Session(
                id=session_id,
                csrf_token=str(fields["csrf"]),
                created_at=float(fields["created"]),
                last_seen_at=float(fields["seen"]),
                access_token=SecretStr(token) if token else None,
                token_expires_at=fields["token_expires"],
                username=username,
                roles=tuple(fields["roles"]),
                services=tuple(fields["services"]),
                flash=fields["flash"],
            )
        except (ValueError, KeyError, TypeError):
            log.warning("a stored session could not be read; it is treated as signed out")
            return None

    async def _call(self, pending: Any) -> Any:
        try:
            result = await pending
        except (RedisError, OSError) as exc:
            if not self._down:
                self._down = True
                log.error("the session store (Redis) cannot be reached: %s", type(exc).__name__)
            raise SessionStoreUnavailable() from None
        if self._down:
            self._down = False
            log.warning("the session store (Redis) answers again")
        return result


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
