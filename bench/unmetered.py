"""The gateway with its metrics taken out, for `make bench`'s metrics on/off comparison only.

`uvicorn bench.unmetered:app` serves the gateway as `services.api_gateway.app:app` does,
minus the metrics middleware (no request counted or timed, `/metrics` is an unknown path)
and with every metric of the gateway's own replaced by one that does nothing. The gateway
itself has no switch for this: a deployment always measures itself.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.metrics import MetricWrapperBase

from services.api_gateway import metrics, middleware
from services.api_gateway.app import create_app
from shared.metrics import MetricsMiddleware


class Unmetered:
    """Stands in for a metric or one of its children: every call does nothing."""

    def inc(self, *_: Any, **__: Any) -> None:
        """Count nothing."""

    dec = observe = set = set_to_current_time = inc

    def labels(self, *_: Any, **__: Any) -> Unmetered:
        """Return itself: its children do nothing either."""
        return self


def unmeter() -> None:
    """Replace every metric of `services.api_gateway.metrics`, and every bound child in its
    tables (changed in place: the proxy imported the table itself), with `Unmetered`."""
    nothing = Unmetered()
    for name, value in list(vars(metrics).items()):
        if isinstance(value, MetricWrapperBase):
            setattr(metrics, name, nothing)
        elif isinstance(value, dict) and all(
            isinstance(child, MetricWrapperBase) for child in value.values()
        ):
            for key in value:
                value[key] = nothing


def record_nothing(route: str, method: str, status: int, seconds: float) -> None:
    """Stands in for `shared.metrics.record_request` in the gateway's `/api` front layer,
    which counts and times proxied requests itself instead of through the middleware."""


unmeter()
middleware.record_request = record_nothing  # type: ignore[attr-defined]  # the front layer calls it
app = create_app()
metered: Any = MetricsMiddleware
app.user_middleware = [entry for entry in app.user_middleware if entry.cls is not metered]
