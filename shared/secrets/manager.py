"""Resolve secrets: the configured store first, then the environment; cached with a TTL."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

from pydantic import SecretStr

from shared.secrets.config import ProviderName, SecretsSettings
from shared.secrets.errors import InvalidSecretError, MissingSecretError, SecretsUnavailableError
from shared.secrets.layout import API_KEY_SECRET_PREFIX
from shared.secrets.registry import Consumer, ManagedSecret, SecretRegistry
from shared.secrets.stores import SecretStore, create_store
from shared.secrets.stores.base import Document

logger = logging.getLogger("shared.secrets")

ENVIRONMENT = "environment"

T = TypeVar("T")

_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def api_key_secret_name(username: str) -> str:
    """Name the per-user write-back entry, one no other username can produce.

    `PORTFOLIO_API_KEY__` + the username with `a-z` upper-cased, digits kept and every
    other character as `_` + its code point in hex (two digits, or `_U` + six beyond
    Latin-1): `a.b` → `A_2EB`, `a_b` → `A_5FB`, `a-b` → `A_2DB`, `a@b` → `A_40B`.
    `_` occurs only as an escape, so `api_key_username` reads every name back.
    """
    parts = []
    for char in username:
        if char in _PLAIN:
            parts.append(char.upper())
        elif ord(char) < 0x100:
            parts.append(f"_{ord(char):02X}")
        else:
            parts.append(f"_U{ord(char):06X}")
    return API_KEY_SECRET_PREFIX + "".join(parts)


def api_key_username(name: str) -> str | None:
    """Return the username `api_key_secret_name` made `name` from; None for any other name."""
    if not name.startswith(API_KEY_SECRET_PREFIX):
        return None
    encoded, chars, index = name[len(API_KEY_SECRET_PREFIX) :], [], 0
    while index < len(encoded):
        char = encoded[index]
        if char != "_":
            if char.lower() not in _PLAIN or char.islower():
                return None
            chars.append(char.lower())
            index += 1
            continue
        width = 6 if encoded[index + 1 : index + 2] == "U" else 2
        start = index + 1 + (width == 6)
        digits = encoded[start : start + width]
        if len(digits) != width or any(d not in "0123456789ABCDEF" for d in digits):
            return None
        chars.append(chr(int(digits, 16)))
        index = start + width
    username = "".join(chars)
    # Only the canonical spelling counts (e.g. `_61` for `a` is not a name we write).
    return username if username and api_key_secret_name(username) == name else None


@dataclass(frozen=True)
class ResolvedSecret:
    """A secret value and where it was found; the value never appears in a repr."""

    name: str
    value: SecretStr
    origin: str
    key: str

    @property
    def source(self) -> str:
        """Describe the origin, e.g. `environment (alias FLASK_SECRET_KEY)`."""
        return self.origin if self.key == self.name else f"{self.origin} (alias {self.key})"


@dataclass
class _CacheEntry:
    resolved: ResolvedSecret | None
    expires_at: float


class SecretsManager:
    """The one way services read managed secrets and write API keys back."""

    def __init__(
        self,
        *,
        settings: SecretsSettings | None = None,
        registry: SecretRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
        environ: Mapping[str, str] | None = None,
        service: Consumer | str | None = None,
    ) -> None:
        self.settings = settings if settings is not None else SecretsSettings.from_environment()
        self.registry = (
            registry
            if registry is not None
            else SecretRegistry.load(self.settings.secrets_registry_path)
        )
        self._clock = clock
        self._environ: Mapping[str, str] = environ if environ is not None else os.environ
        # Whose secrets Vault's per-service layout reads (default: SECRETS_SERVICE).
        self.service = Consumer(service) if service is not None else self.settings.secrets_service
        self._store = self._open_store()
        self._cache: dict[str, _CacheEntry] = {}
        self._reads: dict[SecretStore, asyncio.Future[Mapping[str, str]]] = {}

    @classmethod
    def from_environment(cls, *, service: Consumer | str | None = None) -> SecretsManager:
        """Build a manager from `SECRETS_PROVIDER`, `VAULT_*`, `AWS_*` and the registry."""
        return cls(settings=SecretsSettings.from_environment(), service=service)

    def _open_store(self) -> SecretStore | None:
        return create_store(self.settings, registry=self.registry, service=self.service)

    @property
    def provider_name(self) -> ProviderName:
        """Return `env`, `vault` or `aws`."""
        return self.settings.secrets_provider

    @property
    def store_location(self) -> str | None:
        """Return the store as `vault:<mount>/<path>` or `aws:<secret name>`; None for env."""
        return self._store.location if self._store is not None else None

    @property
    def consulted(self) -> str:
        """Describe where a lookup goes, for error messages."""
        provider = f"SECRETS_PROVIDER={self.provider_name}"
        if self._store is None:
            return f"the environment ({provider})"
        return f"{self._store.location} or the environment ({provider})"

    async def get(self, name: str, *, fresh: bool = False) -> SecretStr | None:
        """Return the value of `name` (or its first alias found), None when it is nowhere.

        `fresh` reads the store even when a cached value has not expired yet: for values
        an operator changes right before they are used, such as the next API key.
        """
        resolved = await self.resolve(name, fresh=fresh)
        return resolved.value if resolved is not None else None

    async def resolve(self, name: str, *, fresh: bool = False) -> ResolvedSecret | None:
        """Return the value of `name` together with where it was found."""
        return await self._resolve(name, self._store, fresh=fresh)

    async def require(self, name: str) -> SecretStr:
        """Return the value of `name`; raise `MissingSecretError` when it is nowhere."""
        return await self._require(name, self._store)

    async def require_for_service(self, service: Consumer | str) -> dict[str, SecretStr]:
        """Return every secret the registry says `service` requires, by primary name."""
        return await self._require_for_service(service, self._store)

    async def write_api_key(self, username: str, api_key: str | SecretStr) -> str | None:
        """Store a user's clear-text API key in the managed store; None with the env provider."""
        return await self._write_api_key(username, api_key, self._store)

    async def aclose(self) -> None:
        """Release the store's connections."""
        if self._store is not None:
            await self._store.aclose()

    async def __aenter__(self) -> SecretsManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # Synchronous twins for start-up code and scripts that have no event loop yet.

    def get_sync(self, name: str) -> SecretStr | None:
        """Blocking `get`."""
        resolved = self._run_sync(lambda store: self._resolve(name, store))
        return resolved.value if resolved is not None else None

    def require_sync(self, name: str) -> SecretStr:
        """Blocking `require`."""
        return self._run_sync(lambda store: self._require(name, store))

    def require_for_service_sync(self, service: Consumer | str) -> dict[str, SecretStr]:
        """Blocking `require_for_service`."""
        return self._run_sync(lambda store: self._require_for_service(service, store))

    def write_api_key_sync(self, username: str, api_key: str | SecretStr) -> str | None:
        """Blocking `write_api_key`."""
        return self._run_sync(lambda store: self._write_api_key(username, api_key, store))

    def _run_sync(self, work: Callable[[SecretStore | None], Awaitable[T]]) -> T:
        # Store clients may be bound to the loop that opened them, so each blocking call
        # uses a store of its own in a loop of its own; the cache is shared.
        async def once() -> T:
            store = self._open_store()
            try:
                return await work(store)
            finally:
                if store is not None:
                    await store.aclose()

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(once())
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, once()).result()

    async def _require(self, name: str, store: SecretStore | None) -> SecretStr:
        resolved = await self._resolve(name, store)
        if resolved is None:
            entry = self.registry.get(name)
            aliases = entry.aliases if entry is not None else ()
            raise MissingSecretError(name, aliases, self.consulted)
        return resolved.value

    async def _require_for_service(
        self, service: Consumer | str, store: SecretStore | None
    ) -> dict[str, SecretStr]:
        return {
            entry.name: await self._require(entry.name, store)
            for entry in self.registry.required_by(service)
        }

    async def _write_api_key(
        self, username: str, api_key: str | SecretStr, store: SecretStore | None
    ) -> str | None:
        if store is None:
            return None
        value = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        name = api_key_secret_name(username)
        if api_key_username(name) != username:
            # Cannot happen with the encoding above; refused rather than risk writing one
            # user's key where another user's is read.
            raise InvalidSecretError(f"username {username!r} has no unambiguous API key name")
        try:
            return await store.write(name, value)
        finally:
            self._cache.pop(name, None)

    async def _resolve(
        self, name: str, store: SecretStore | None, *, fresh: bool = False
    ) -> ResolvedSecret | None:
        entry = self.registry.get(name)
        candidates = entry.candidates if entry is not None else (name,)
        if store is None:
            resolved = self._lookup(name, candidates, self._environ, ENVIRONMENT)
        else:
            resolved = await self._resolve_through_store(name, candidates, store, fresh=fresh)
        _check(entry, resolved)
        return resolved

    async def _resolve_through_store(
        self, name: str, candidates: tuple[str, ...], store: SecretStore, *, fresh: bool = False
    ) -> ResolvedSecret | None:
        ttl = self.settings.secrets_cache_ttl_seconds
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None and now < cached.expires_at and not fresh:
            return cached.resolved
        try:
            document = await self._read_document(store)
        except SecretsUnavailableError as exc:
            if cached is None:
                raise
            # A store outage must not take a running service down with it: keep the
            # last value we saw and try the store again after another TTL.
            logger.warning(
                "secret %s: %s; serving the value cached earlier from %s",
                name,
                exc,
                cached.resolved.source if cached.resolved is not None else "nowhere",
            )
            cached.expires_at = now + ttl
            return cached.resolved
        resolved = self._lookup(name, candidates, document, store.location)
        if resolved is not None and isinstance(document, Document):
            # The precise path, when the store reads several (Vault's per-service layout).
            resolved = replace(resolved, origin=document.origins.get(resolved.key, store.location))
        resolved = resolved or self._lookup(name, candidates, self._environ, ENVIRONMENT)
        # Kept even with a TTL of 0: then it is never fresh, but still the fallback
        # while the store is down.
        self._cache[name] = _CacheEntry(resolved, now + ttl)
        return resolved

    async def _read_document(self, store: SecretStore) -> Mapping[str, str]:
        # Callers whose cache entries expire together share one read of the store.
        pending = self._reads.get(store)
        if pending is None:
            pending = asyncio.ensure_future(store.read())
            self._reads[store] = pending
            pending.add_done_callback(lambda done: self._finish_read(store, done))
        return await asyncio.shield(pending)

    def _finish_read(self, store: SecretStore, done: asyncio.Future[Mapping[str, str]]) -> None:
        self._reads.pop(store, None)
        if not done.cancelled():
            done.exception()  # retrieved here so an unawaited failure is not logged as lost

    @staticmethod
    def _lookup(
        name: str, candidates: tuple[str, ...], source: Mapping[str, str], origin: str
    ) -> ResolvedSecret | None:
        for key in candidates:
            value = source.get(key)
            # An empty value (`KEY=` in an env file) counts as unset.
            if value:
                return ResolvedSecret(name=name, value=SecretStr(value), origin=origin, key=key)
        return None


def _check(entry: ManagedSecret | None, resolved: ResolvedSecret | None) -> None:
    if entry is None or resolved is None or entry.min_length is None:
        return
    if len(resolved.value.get_secret_value()) < entry.min_length:
        raise InvalidSecretError(
            f"secret {entry.name} from {resolved.source} is shorter than the "
            f"{entry.min_length} characters required"
        )
