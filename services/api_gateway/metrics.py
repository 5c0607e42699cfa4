"""The gateway's own Prometheus metrics (the request metrics are shared.metrics').

Every label value comes from a closed set (a service, a method, an error code, a cause):
never a username, key, token or address. The children the proxy's hot path touches are
bound here, once, at import; `.labels()` (a lock and a dict lookup) stays off that path.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS
from shared.roles import SERVICES, Service


class Credential(StrEnum):
    """What a caller authenticated with, as the metrics name it."""

    PASSWORD = "password"  # noqa: S105  # nosec B105 - a label value
    JWT = "jwt"
    API_KEY = "api_key"


SUCCESS = "success"


class UpstreamCause(StrEnum):
    """Why a downstream call failed (the proxy's table of lower-layer errors)."""

    CONNECT_TIMEOUT = "connect_timeout"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    CONNECTION_BROKEN = "connection_broken"
    SHUTTING_DOWN = "shutting_down"


UPSTREAM_SECONDS = Histogram(
    "gateway_upstream_request_duration_seconds",
    "Time a proxied request spent with the downstream service, by service.",
    ("service",),
    buckets=LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "gateway_upstream_errors",
    "Proxied requests the gateway answered 502, 503 or 504 itself, by service, status and cause.",
    ("service", "status", "cause"),
)
AUTHENTICATIONS = Counter(
    "gateway_authentications",
    "Authentication attempts by method (password, jwt, api_key) and outcome (success or "
    "the error code answered).",
    ("method", "outcome"),
)
THROTTLE_DECISIONS = Counter(
    "gateway_throttle_decisions",
    "Password checks (logins, rotations) the per-account and per-address throttle let "
    "through or refused.",
    ("operation", "decision"),
)
CACHE_LOOKUPS = Counter(
    "gateway_cache_lookups",
    "Lookups in the verified-token and API-key caches, by cache and result (hit, miss).",
    ("cache", "result"),
)
REVOCATIONS = Counter(
    "gateway_revocations",
    "Revocations: one token (logout) or every token and cached key of a user.",
    ("kind",),
)
SHARED_STATE_UP = Gauge(
    "gateway_shared_state_up",
    "1 while the shared state (Redis) answers within its budget, 0 while this replica "
    "falls back to its own memory.",
    ("backend",),
    multiprocess_mode="livemin",
)
SHARED_STATE_FALLBACKS = Counter(
    "gateway_shared_state_fallbacks",
    "Shared-state calls answered from this replica's memory because Redis did not.",
)
IDENTITY_FEED_POLLS = Counter(
    "gateway_identity_feed_polls",
    "Polls of the identity service's change feed, by outcome (ok, failed).",
    ("outcome",),
)
IDENTITY_FEED_LAST_SUCCESS = Gauge(
    "gateway_identity_feed_last_success_timestamp_seconds",
    "When the change feed was last read to its end (Unix time); the feed lag is time() minus this.",
    multiprocess_mode="livemin",
)

# Bound once: the hot path only calls inc() / observe() on these.
UPSTREAM_TIMERS: dict[Service, Histogram] = {
    service: UPSTREAM_SECONDS.labels(service.value) for service in SERVICES
}
AUTH_SUCCESS: dict[Credential, Counter] = {
    method: AUTHENTICATIONS.labels(method.value, SUCCESS) for method in Credential
}
TOKEN_CACHE_HIT = CACHE_LOOKUPS.labels("token", "hit")
TOKEN_CACHE_MISS = CACHE_LOOKUPS.labels("token", "miss")
API_KEY_CACHE_HIT = CACHE_LOOKUPS.labels("api_key", "hit")
API_KEY_CACHE_MISS = CACHE_LOOKUPS.labels("api_key", "miss")
TOKEN_REVOKED = REVOCATIONS.labels("token")
USER_REVOKED = REVOCATIONS.labels("user")
REDIS_UP = SHARED_STATE_UP.labels("redis")
FEED_OK = IDENTITY_FEED_POLLS.labels("ok")
FEED_FAILED = IDENTITY_FEED_POLLS.labels("failed")


def authentication_failed(method: Credential, code: str) -> None:
    """Count a refused authentication by its error code (a closed set)."""
    AUTHENTICATIONS.labels(method.value, code).inc()


def throttle_decision(operation: str, *, refused: bool) -> None:
    """Count one throttle decision (`operation`: login or password_rotation)."""
    THROTTLE_DECISIONS.labels(operation, "refused" if refused else "allowed").inc()


def upstream_failed(service: Service, status: int, cause: UpstreamCause) -> None:
    """Count a downstream call the gateway answered with `status` itself."""
    UPSTREAM_ERRORS.labels(service.value, str(status), cause.value).inc()
