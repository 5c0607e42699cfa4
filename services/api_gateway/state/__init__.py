"""State the gateway must share between replicas, behind one small async interface.

Login throttling, token revocation, the API-key verification cache (and its
invalidation) and API-key usage counters all go through `GatewayState`. It lives in
this process by default (`MemoryState`), or in Redis for several replicas
(`GATEWAY_STATE_URL=redis://...`, `RedisState`), without touching the rest of the gateway.
"""

from __future__ import annotations

from services.api_gateway.errors import StartupError
from services.api_gateway.state.base import ApiKeyUsage, ApiKeyUse, GatewayState, StateCondition
from services.api_gateway.state.memory import MemoryState

REDIS_SCHEMES = ("redis", "rediss", "unix")

__all__ = [
    "ApiKeyUsage",
    "ApiKeyUse",
    "GatewayState",
    "MemoryState",
    "StateCondition",
    "create_state",
    "in_process",
]


def in_process(url: str | None) -> bool:
    """Tell whether `GATEWAY_STATE_URL` leaves the state in this process."""
    return url is None or url.strip() in ("", "memory://")


def create_state(
    url: str | None, *, prefix: str = "lct:gateway:", timeout: float = 0.5, budget: float = 0.25
) -> GatewayState:
    """Build the state backend `GATEWAY_STATE_URL` names (unset: in memory)."""
    if url is None or in_process(url):
        return MemoryState()
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in REDIS_SCHEMES:
        shown = repr(scheme) if scheme else "(none)"
        raise StartupError(
            f"gateway cannot start: GATEWAY_STATE_URL scheme {shown} is not supported; "
            "use redis://, rediss:// or unix://, or leave it unset for in-memory state"
        )
    # Imported here: a single in-memory replica never loads the Redis client.
    from services.api_gateway.state.redis import RedisState

    return RedisState.from_url(url.strip(), prefix=prefix, timeout=timeout, budget=budget)
