"""What the frontend's `/readyz` checks: the gateway, and Redis when it holds the sessions."""

from __future__ import annotations

from services.frontend.errors import SessionStoreUnavailable
from services.frontend.gateway import Gateway
from services.frontend.redis_sessions import RedisSessionStore
from services.frontend.sessions import SessionStore
from shared.readiness import Check, probe


async def _sessions(store: RedisSessionStore) -> str | None:
    try:
        await store.ping()
    except SessionStoreUnavailable:
        return "Redis does not answer"
    return None


async def readiness_checks(gateway: Gateway, store: SessionStore) -> list[Check]:
    """Check the gateway (every page goes through it) and a Redis session store."""
    checks = [await probe("gateway", gateway.ready(), up_detail="its /readyz answers 200")]
    if isinstance(store, RedisSessionStore):
        checks.append(await probe("sessions", _sessions(store), up_detail="Redis answers"))
    return checks
