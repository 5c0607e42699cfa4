"""The `/readyz` answer every service gives: each dependency checked, with detail.

200 `ready` when every dependency answers, 200 `degraded` (the optional ones that do not
are listed) while the service can still serve, 503 with the JSON error body (the checks in
it) when a dependency it cannot serve without is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse

from shared.errors import ErrorCode, error_response

# A probe that takes longer than this counts as down: a readiness probe must answer fast.
PROBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class Check:
    """One dependency's state: `required` ones make the service unready when down."""

    name: str
    up: bool
    detail: str
    required: bool = True

    def as_json(self) -> dict[str, Any]:
        """Return the check as its entry in the answer."""
        return {
            "status": "up" if self.up else "down",
            "required": self.required,
            "detail": self.detail,
        }


async def probe(
    name: str,
    answer: Awaitable[str | None],
    *,
    up_detail: str,
    required: bool = True,
) -> Check:
    """Run one probe: it returns None when the dependency answers, else why it does not.

    An exception counts as down and is named by its type only (its message may hold a URL
    with a password).
    """
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            problem = await answer
    except TimeoutError:
        problem = f"no answer within {PROBE_TIMEOUT_SECONDS:g} s"
    except Exception as exc:
        problem = f"unreachable ({type(exc).__name__})"
    if problem is None:
        return Check(name, True, up_detail, required)
    return Check(name, False, problem, required)


def readiness_response(
    checks: Sequence[Check],
    *,
    code: ErrorCode = ErrorCode.SERVICE_UNAVAILABLE,
    **extra: Any,
) -> JSONResponse:
    """Answer `/readyz` from the checks: 200 ready or degraded, 503 when a required one is down."""
    entries = {check.name: check.as_json() for check in checks}
    failed = [check for check in checks if check.required and not check.up]
    if failed:
        message = "not ready: " + "; ".join(f"{check.name}: {check.detail}" for check in failed)
        return error_response(503, code, message, checks=entries)
    degraded = [check.name for check in checks if not check.up]
    body = {
        "status": "degraded" if degraded else "ready",
        "degraded": degraded,
        "checks": entries,
        **extra,
    }
    return JSONResponse(body)
