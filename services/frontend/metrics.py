"""The frontend's own Prometheus metrics (the request metrics are shared.metrics').

Labels are causes from a closed set, never a username or address.
"""

from __future__ import annotations

from enum import StrEnum

from prometheus_client import Counter, Gauge


class SessionEnd(StrEnum):
    """Why a signed-in session ended."""

    LOGOUT = "logout"
    # A new sign-in in the same browser replaced it.
    REPLACED = "replaced"
    # The store no longer had it: idle timeout or absolute lifetime.
    EXPIRED = "expired"
    # Its gateway token ran out, or the gateway refused it (revoked, account changed).
    TOKEN_REFUSED = "token_refused"  # noqa: S105  # nosec B105 - a label value


# With a shared (Redis) store every frontend reports the same total: take the max, not the
# sum, across replicas. Several workers need the shared store, so `livemax` fits.
SESSIONS_ACTIVE = Gauge(
    "frontend_sessions_active",
    "Signed-in browser sessions that are live (all frontends' for the shared store), "
    "counted at each scrape.",
    multiprocess_mode="livemax",
)
SESSIONS_STARTED = Counter("frontend_sessions_started", "Browser sessions signed in.")
SESSION_ENDS = Counter(
    "frontend_session_ends",
    "Signed-in browser sessions that ended, by cause.",
    ("cause",),
)
ENDS = {cause: SESSION_ENDS.labels(cause.value) for cause in SessionEnd}


def session_ended(cause: SessionEnd) -> None:
    """Count one ended session."""
    ENDS[cause].inc()
