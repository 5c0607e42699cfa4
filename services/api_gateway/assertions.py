"""Signed identity assertions for downstream services, cached per caller and service."""

from __future__ import annotations

from typing import Any

from services.api_gateway.principal import Principal
from shared.assertion import AssertionSigner
from shared.clock import epoch_seconds
from shared.roles import Service


class AssertionCache:
    """Signed assertions per (caller, service), reused for half their lifetime."""

    def __init__(self, signer: AssertionSigner, *, max_size: int = 10_000) -> None:
        self._signer = signer
        self._reuse_seconds = signer.ttl_seconds / 2
        self._cache: dict[tuple[Any, ...], tuple[bytes, float]] = {}
        self._max_size = max_size

    def get(self, principal: Principal, service: Service) -> bytes:
        """Return a valid assertion of the caller for the service."""
        key = (
            principal.username,
            principal.roles,
            principal.auth_method,
            principal.key_id,
            service,
        )
        now = epoch_seconds()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        token, _ = self._signer.sign(
            username=principal.username,
            roles=principal.roles,
            auth_method=principal.auth_method.value,
            service=service.value,
            key_id=principal.key_id,
            now=now,
        )
        if len(self._cache) >= self._max_size:
            del self._cache[next(iter(self._cache))]
        value = token.encode()
        self._cache[key] = (value, now + self._reuse_seconds)
        return value
