"""The interface of the gateway's shared state, and the records it keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from services.api_gateway.principal import Principal


@dataclass(frozen=True, slots=True)
class ApiKeyUse:
    """One request made with an API key."""

    key_id: str
    username: str
    service: str | None
    status: int
    client: str | None
    at: float


@dataclass(slots=True)
class ApiKeyUsage:
    """Usage of one API key: totals, or the counts not yet saved."""

    key_id: str
    username: str
    requests: int = 0
    services: dict[str, int] = field(default_factory=dict)
    status_classes: dict[str, int] = field(default_factory=dict)
    first_used_at: float = 0.0
    last_used_at: float = 0.0
    last_client: str | None = None


@dataclass(frozen=True, slots=True)
class StateCondition:
    """Which backend holds the state, and whether it is reachable right now."""

    backend: str
    available: bool
    detail: str


class GatewayState(Protocol):
    """Shared gateway state; every method is safe to call on the event loop."""

    async def start(self) -> None:
        """Connect (if the backend needs to); a backend that is down is not an error."""

    def condition(self) -> StateCondition:
        """Describe the backend and whether it answers (for `/readyz`)."""

    async def reserve_login_attempt(
        self, limits: Mapping[str, int], window_seconds: float
    ) -> float | None:
        """Count one attempt against every throttle key in one atomic step, unless a key
        has reached its limit: then count nothing and return the seconds to wait."""

    async def refund_login_attempt(self, keys: tuple[str, ...]) -> None:
        """Give back an attempt reserved against each key that turned out not to be a
        wrong password (a success, or an error before the password was judged)."""

    async def clear_login_failures(self, key: str) -> None:
        """Forget the failures of one key (after a successful login)."""

    async def track_token(self, *, subject: str, jti: str, expires_at: float) -> None:
        """Remember an issued token so all of a user's tokens can be revoked."""

    async def revoke_token(self, jti: str, expires_at: float) -> None:
        """Revoke one token until it expires."""

    async def revoke_subject(self, subject: str) -> None:
        """Revoke every live token issued to a user."""

    async def is_token_revoked(self, jti: str) -> bool:
        """Tell whether a token was revoked."""

    async def cached_api_key(self, key_hash: str) -> Principal | None:
        """Return the still-fresh verification of an API key, by the key's hash."""

    async def api_key_cache_epoch(self) -> str:
        """Return the cache's invalidation count, read before a key is verified."""

    async def cache_api_key(
        self, key_hash: str, principal: Principal, ttl: float, *, epoch: str
    ) -> None:
        """Remember a verified API key (by hash) for `ttl` seconds, unless an invalidation
        happened since `epoch` was read: an invalidation always wins over a verification
        that was in flight while it happened."""

    async def invalidate_api_keys(self, username: str) -> None:
        """Drop every cached API-key verification of a user (and move the epoch on)."""

    async def record_api_key_use(self, use: ApiKeyUse) -> None:
        """Count one request made with an API key."""

    async def api_key_usage(self) -> list[ApiKeyUsage]:
        """Return usage per key id, most recently used first."""

    async def close(self) -> None:
        """Release connections, if any."""
