"""The frontend's long-lived resources, opened in the lifespan and closed after it."""

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass

import httpx
from fastapi.templating import Jinja2Templates
from pydantic import SecretStr

from services.frontend import metrics
from services.frontend.config import (
    PREVIOUS_SESSION_SECRET_NAME,
    SESSION_SECRET_NAME,
    FrontendSecrets,
    Settings,
    check_session_secret,
    load_secrets,
    load_settings,
)
from services.frontend.csrf import FormPassSigner
from services.frontend.errors import SessionStoreUnavailable, StartupError
from services.frontend.gateway import Gateway
from services.frontend.redis_sessions import RedisSessionStore, TokenCipher
from services.frontend.rotation import NOT_BEFORE, activation, startup_secret
from services.frontend.sessions import (
    COOKIE_NAME,
    SECURE_COOKIE_NAME,
    CookieSigner,
    MemorySessionStore,
    SessionStore,
)
from services.frontend.templating import build_templates
from shared.secrets import SecretsError, SecretsManager
from shared.secrets.watch import SecretValues, SecretWatcher

# Covers the time one read of the store takes, on top of the read interval.
ACTIVATION_MARGIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    sessions: SessionStore
    gateway: Gateway
    templates: Jinja2Templates
    cookie_name: str
    cookie_signer: CookieSigner
    form_signer: FormPassSigner
    # `GET /metrics` answers this bearer token alone (shared.metrics); None: nobody.
    metrics_token: SecretStr | None = None

    async def refresh_metrics(self) -> None:
        """Count the live sessions for a scrape; an unreachable store keeps the last count."""
        with suppress(SessionStoreUnavailable):
            metrics.SESSIONS_ACTIVE.set(await self.sessions.count())


@asynccontextmanager
async def open_runtime(
    settings: Settings | None = None,
    secrets: FrontendSecrets | None = None,
    *,
    session_store: SessionStore | None = None,
) -> AsyncIterator[Runtime]:
    """Build the runtime; settings and the secret are read from the environment when omitted,
    and then read again every `SECRETS_CACHE_TTL_SECONDS`, so a rotated session secret signs
    from its next read on while sessions signed with the one before stay valid."""
    settings = settings if settings is not None else load_settings()
    manager = _open_manager() if secrets is None else None
    secrets = secrets if secrets is not None else await load_secrets()
    security = settings.security
    # A secret a rotation wrote signs from its not-before on; until then, the previous one.
    signing, signs_from = startup_secret(
        secrets.session_secret,
        secrets.previous_session_secret,
        secrets.not_before,
        now=time.time(),
    )
    redis_store: RedisSessionStore | None = None
    sessions: SessionStore
    # `is not None`, not truth: an empty store is falsy (it has a length).
    if session_store is not None:
        sessions = session_store
    elif settings.frontend_session_url is not None:
        sessions = redis_store = RedisSessionStore(
            settings.frontend_session_url.get_secret_value(),
            secret=signing,
            idle_timeout=security.session_timeout,
            lifetime=security.session_lifetime,
            max_sessions_per_user=security.max_sessions_per_user,
        )
        # Logged by the store; pages answer 503 until it is back, nothing crashes.
        with suppress(SessionStoreUnavailable):
            await redis_store.ping()
    else:
        sessions = MemorySessionStore(
            idle_timeout=security.session_timeout,
            lifetime=security.session_lifetime,
            max_sessions=security.max_sessions,
            max_sessions_per_user=security.max_sessions_per_user,
        )
    cookie_signer = CookieSigner(signing)
    form_signer = FormPassSigner(signing, lifetime=security.form_timeout)
    # A frontend started after a rotation still accepts what the secret before made.
    cipher = redis_store.cipher if redis_store is not None else None
    for keys in _holders(cookie_signer, form_signer, cipher):
        if signs_from is not None:
            keys.rotate(secrets.session_secret, activate_at=signs_from)
        keys.accept_previous(secrets.previous_session_secret)
    watcher = (
        session_secret_watcher(
            manager,
            cookie_signer,
            form_signer,
            cipher=cipher,
        )
        if manager is not None
        else None
    )
    async with AsyncExitStack() as cleanup:
        if redis_store is not None:
            cleanup.push_async_callback(redis_store.close)
        if watcher is not None:
            cleanup.push_async_callback(watcher.manager.aclose)
            cleanup.push_async_callback(watcher.stop)
        client = await cleanup.enter_async_context(
            httpx.AsyncClient(
                base_url=str(settings.gateway_url), timeout=settings.gateway_timeout_seconds
            )
        )
        if watcher is not None:
            watcher.start()
        yield Runtime(
            settings=settings,
            sessions=sessions,
            gateway=Gateway(client),
            templates=build_templates(),
            cookie_name=SECURE_COOKIE_NAME if security.cookie_secure else COOKIE_NAME,
            cookie_signer=cookie_signer,
            form_signer=form_signer,
            metrics_token=secrets.metrics_scrape_token,
        )


def session_secret_watcher(
    manager: SecretsManager,
    cookie_signer: CookieSigner,
    form_signer: FormPassSigner,
    *,
    cipher: TokenCipher | None = None,
) -> SecretWatcher:
    """Return the watcher (not started) that hands a rotated session secret to both signers
    and to the cipher sealing gateway tokens in Redis."""

    async def apply(values: SecretValues) -> None:
        secret = values.get(SESSION_SECRET_NAME)
        if secret is None:
            raise ValueError(f"{SESSION_SECRET_NAME} is no longer set")
        try:
            check_session_secret(secret)
        except StartupError as exc:
            raise ValueError(str(exc)) from None
        # Signing waits until every frontend sharing the sessions has read the secret too:
        # until the not-before the rotation wrote, else one interval from this read.
        activate_at = activation(values, time.time() + watcher.interval + ACTIVATION_MARGIN_SECONDS)
        previous = values.get(PREVIOUS_SESSION_SECRET_NAME)
        for keys in _holders(cookie_signer, form_signer, cipher):
            keys.rotate(secret, activate_at=activate_at)
            keys.accept_previous(previous)

    watcher = SecretWatcher(
        manager, (SESSION_SECRET_NAME, PREVIOUS_SESSION_SECRET_NAME, NOT_BEFORE), apply
    )
    return watcher


def _holders(
    cookie_signer: CookieSigner, form_signer: FormPassSigner, cipher: TokenCipher | None
) -> list[CookieSigner | FormPassSigner | TokenCipher]:
    """Return everything keyed by the session secret."""
    holders: list[CookieSigner | FormPassSigner | TokenCipher] = [cookie_signer, form_signer]
    if cipher is not None:
        holders.append(cipher)
    return holders


def _open_manager() -> SecretsManager:
    try:
        return SecretsManager.from_environment(service="frontend")
    except SecretsError as exc:
        raise StartupError(str(exc)) from None
