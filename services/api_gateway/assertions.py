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
        # A rotated key signs only from its activation time on, once every downstream
        # service has had the time to learn its public half.
        self._pending: tuple[AssertionSigner, float] | None = None
        self._reuse_seconds = signer.ttl_seconds / 2
        self._cache: dict[tuple[Any, ...], tuple[bytes, float]] = {}
        self._max_size = max_size

    @property
    def kid(self) -> str:
        """Return the `kid` of the key assertions are signed with now."""
        return self._current(epoch_seconds()).kid

    def rotate(self, signer: AssertionSigner, *, activate_at: float) -> None:
        """Sign with `signer` from `activate_at` on."""
        if signer.kid == self._signer.kid:
            self._pending = None
        elif self._pending is None or self._pending[0].kid != signer.kid:
            self._pending = (signer, activate_at)

    def _current(self, now: float) -> AssertionSigner:
        pending = self._pending
        if pending is not None and now >= pending[1]:
            self._signer, self._pending = pending[0], None
            # Assertions of the old key stay valid downstream (the previous public key),
            # but new ones carry the new key from here on.
            self._cache.clear()
        return self._signer

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
        signer = self._current(now)
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        token, _ = signer.sign(
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
