"""The gateway's long-lived resources, opened in the lifespan and closed after it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import httpx
from pydantic import SecretStr

from services.api_gateway.access_log import AccessLog
from services.api_gateway.assertions import AssertionCache
from services.api_gateway.auth import Authenticator
from services.api_gateway.config import GatewaySecrets, Settings, load_secrets, load_settings
from services.api_gateway.docs import ApiDocument
from services.api_gateway.errors import StartupError
from services.api_gateway.identity import SERVICE_TOKEN_HEADER, IdentityClient
from services.api_gateway.journal import StateJournal
from services.api_gateway.rotation import live_keys_watcher, startup_key
from services.api_gateway.stamps import SKEW_MARGIN_SECONDS, AccessStamps
from services.api_gateway.state import GatewayState, create_state, in_process
from services.api_gateway.state.memory import MemoryState
from services.api_gateway.sync import IdentitySync
from services.api_gateway.tokens import TokenService
from services.api_gateway.upstream import Pool
from shared.assertion import AssertionSigner
from shared.clock import epoch_seconds
from shared.keys import KeyFormatError
from shared.roles import SERVICES, Service
from shared.secrets import SecretsError, SecretsManager
from shared.workers import ListenerTakenError, sole_worker

JOURNAL_START_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler needs, built once per process."""

    settings: Settings
    tokens: TokenService
    authenticator: Authenticator
    identity: IdentityClient
    state: GatewayState
    assertions: AssertionCache
    # aiohttp sessions for the API document and readiness probes; the proxy uses `pools`.
    upstreams: dict[Service, aiohttp.ClientSession]
    upstream_urls: dict[Service, str]
    pools: dict[Service, Pool]
    access_log: AccessLog
    sync: IdentitySync
    docs: ApiDocument
    # `GET /metrics` answers this bearer token alone (shared.metrics); None: nobody.
    metrics_token: SecretStr | None = None
    # Saves an in-process state across restarts (None: Redis, or turned off).
    journal: StateJournal | None = None


# An idle pooled connection is closed after this long, before the server behind it closes it
# (uvicorn after 5 s, nginx after 75 s): a request sent on a connection the server is closing
# at that moment is lost ("server disconnected"), and a POST is not retried.
IDLE_CONNECTION_SECONDS = 3.0


def upstream_session(settings: Settings) -> aiohttp.ClientSession:
    """Return the pooled client for one downstream service (one per service)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=settings.gateway_upstream_max_connections,
            keepalive_timeout=IDLE_CONNECTION_SECONDS,
        ),
        timeout=aiohttp.ClientTimeout(
            total=None,
            connect=settings.gateway_upstream_timeout_seconds,  # includes waiting for the pool
            sock_connect=settings.gateway_upstream_connect_timeout_seconds,
            sock_read=settings.gateway_upstream_timeout_seconds,
        ),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def upstream_pool(settings: Settings, service: Service) -> Pool:
    """Return the proxy's keep-alive pool for one downstream service."""
    return Pool(
        settings.service_url(service),
        max_connections=settings.gateway_upstream_max_connections,
        connect_timeout=settings.gateway_upstream_connect_timeout_seconds,
        pool_timeout=settings.gateway_upstream_timeout_seconds,  # waiting for the pool included
        read_timeout=settings.gateway_upstream_timeout_seconds,
        idle_seconds=IDLE_CONNECTION_SECONDS,
    )


def identity_http(settings: Settings, secrets: GatewaySecrets) -> httpx.AsyncClient:
    """Return the pooled client for the identity service, carrying the service token."""
    timeout = settings.gateway_identity_timeout_seconds
    return httpx.AsyncClient(
        base_url=settings.portfolio_service_url,
        headers={SERVICE_TOKEN_HEADER: secrets.identity_service_token.get_secret_value()},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
        limits=httpx.Limits(keepalive_expiry=IDLE_CONNECTION_SECONDS),
        follow_redirects=False,
    )


def _keys(settings: Settings, secrets: GatewaySecrets) -> tuple[TokenService, AssertionCache]:
    # A key a rotation wrote signs only from its not-before on; a gateway starting before
    # then signs with the previous key until then. Key errors name the secret, never its value.
    now = epoch_seconds()
    try:
        signing, jwt_next_at = startup_key(
            secrets.jwt_private_key,
            secrets.jwt_previous_private_key,
            secrets.jwt_not_before,
            now=now,
        )
        tokens = TokenService(
            private_key=signing,
            previous_public_keys=(
                [secrets.jwt_previous_public_key.get_secret_value()]
                if secrets.jwt_previous_public_key is not None
                else []
            ),
            issuer=settings.gateway_issuer,
            audience=settings.gateway_audience,
            ttl_seconds=settings.gateway_token_ttl_seconds,
            cache_size=settings.gateway_token_cache_size,
        )
        if jwt_next_at is not None:
            tokens.rotate(secrets.jwt_private_key.get_secret_value(), activate_at=jwt_next_at)
    except (KeyFormatError, ValueError, TypeError):
        raise StartupError(
            "gateway cannot start: GATEWAY_JWT_PRIVATE_KEY, GATEWAY_JWT_PREVIOUS_PRIVATE_KEY or "
            "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY is not an Ed25519 key (PEM or base64url raw 32 bytes)"
        ) from None
    ttl = settings.gateway_assertion_ttl_seconds
    try:
        signing, assertion_next_at = startup_key(
            secrets.assertion_private_key,
            secrets.assertion_previous_private_key,
            secrets.assertion_not_before,
            now=now,
        )
        assertions = AssertionCache(AssertionSigner(signing, ttl_seconds=ttl))
        if assertion_next_at is not None:
            assertions.rotate(
                AssertionSigner(secrets.assertion_private_key.get_secret_value(), ttl_seconds=ttl),
                activate_at=assertion_next_at,
            )
    except (KeyFormatError, ValueError, TypeError):
        raise StartupError(
            "gateway cannot start: GATEWAY_ASSERTION_PRIVATE_KEY or "
            "GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY is not an Ed25519 private key "
            "(PEM or base64url raw 32 bytes)"
        ) from None
    return tokens, assertions


@asynccontextmanager
async def open_runtime(
    settings: Settings | None = None, secrets: GatewaySecrets | None = None
) -> AsyncIterator[Runtime]:
    """Build the runtime from settings and secrets (read from the environment when omitted).

    Secrets read from the environment are read again every `SECRETS_CACHE_TTL_SECONDS`,
    so a rotated key or service token is taken up without a restart.
    """
    settings = settings if settings is not None else load_settings()
    with _sole_worker_on_memory(settings):
        async with _open_runtime(settings, secrets) as runtime:
            yield runtime


@contextlib.contextmanager
def _sole_worker_on_memory(settings: Settings) -> Iterator[None]:
    # In-process state is right for one process only: a second worker on the same socket
    # would count every throttle again and never see the first one's revocations.
    url = settings.gateway_state_url
    if not in_process(url.get_secret_value() if url is not None else None):
        yield
        return
    try:
        with sole_worker("gateway"):
            yield
    except ListenerTakenError as exc:
        raise StartupError(
            f"gateway cannot start: another gateway worker already serves {exc.address} on "
            "in-memory state, where each worker would keep its own login throttles and token "
            "revocations (every limit multiplied by the workers, a logout seen by one); set "
            "GATEWAY_STATE_URL=redis://host:6379/0 to share them, or run one worker"
        ) from None


@asynccontextmanager
async def _open_runtime(
    settings: Settings, secrets: GatewaySecrets | None
) -> AsyncIterator[Runtime]:
    manager = _open_manager() if secrets is None else None
    secrets = secrets if secrets is not None else await load_secrets()
    tokens, assertions = _keys(settings, secrets)
    state = create_state(
        settings.gateway_state_url.get_secret_value() if settings.gateway_state_url else None,
        prefix=settings.gateway_state_prefix,
        timeout=settings.gateway_state_timeout_seconds,
        budget=settings.gateway_state_budget_seconds,
    )
    identity_client = identity_http(settings, secrets)
    identity = IdentityClient(identity_client)
    access_log = AccessLog(settings.gateway_access_log)
    upstreams = {service: upstream_session(settings) for service in SERVICES}
    pools = {service: upstream_pool(settings, service) for service in SERVICES}
    try:
        await state.start()
        access_log.start()
    except OSError as exc:
        await _close(identity_client, upstreams, pools, state)
        raise StartupError(
            f"gateway cannot start: GATEWAY_ACCESS_LOG cannot be opened ({exc.strerror})"
        ) from None
    stamps = AccessStamps(keep_seconds=settings.gateway_token_ttl_seconds + SKEW_MARGIN_SECONDS)
    authenticator = Authenticator(
        settings=settings, tokens=tokens, identity=identity, state=state, stamps=stamps
    )
    sync = IdentitySync(
        identity=identity,
        authenticator=authenticator,
        state=state,
        stamps=stamps,
        interval=settings.gateway_identity_sync_seconds,
        replay_seconds=settings.gateway_token_ttl_seconds + SKEW_MARGIN_SECONDS,
    )
    journal = (
        StateJournal(
            identity=identity, state=state, interval=settings.gateway_state_journal_seconds
        )
        if isinstance(state, MemoryState) and settings.gateway_state_journal_seconds > 0
        else None
    )
    watcher = (
        live_keys_watcher(
            manager,
            tokens=tokens,
            assertions=assertions,
            identity_http=identity_client,
            assertion_ttl_seconds=settings.gateway_assertion_ttl_seconds,
        )
        if manager is not None
        else None
    )
    runtime = Runtime(
        settings=settings,
        tokens=tokens,
        authenticator=authenticator,
        identity=identity,
        state=state,
        assertions=assertions,
        upstreams=upstreams,
        upstream_urls={service: settings.service_url(service) for service in SERVICES},
        pools=pools,
        access_log=access_log,
        sync=sync,
        docs=ApiDocument(upstreams[Service.PORTFOLIO], settings.service_url(Service.PORTFOLIO)),
        metrics_token=secrets.metrics_scrape_token,
        journal=journal,
    )
    if journal is not None:
        # Revocations read back before the first request, so a token logged out before a
        # restart is refused from the start; an identity store that does not answer in
        # time leaves it to the journal's next tick.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(JOURNAL_START_SECONDS):
                await journal.tick()
        journal.start()
    if settings.gateway_identity_sync_seconds > 0:
        sync.start()
    if watcher is not None:
        identity.refresh_token = watcher.refresh
        watcher.start()
    try:
        yield runtime
    finally:
        if watcher is not None:
            await watcher.stop()
            await watcher.manager.aclose()
        await sync.stop()
        if journal is not None:
            await journal.stop()
        await _close(identity_client, upstreams, pools, state)
        access_log.stop()


def _open_manager() -> SecretsManager:
    try:
        return SecretsManager.from_environment(service="gateway")
    except SecretsError as exc:
        raise StartupError(f"gateway cannot start: {exc}") from None


async def _close(
    identity: httpx.AsyncClient,
    upstreams: dict[Service, aiohttp.ClientSession],
    pools: dict[Service, Pool],
    state: GatewayState,
) -> None:
    await asyncio.gather(
        identity.aclose(),
        *(session.close() for session in upstreams.values()),
        *(pool.close() for pool in pools.values()),
        state.close(),
        return_exceptions=True,
    )
