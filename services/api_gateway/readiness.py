"""What the gateway's `/readyz` checks: the identity service, Redis and every downstream."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp

from shared.readiness import PROBE_TIMEOUT_SECONDS, Check, probe
from shared.roles import Service

if TYPE_CHECKING:
    from services.api_gateway.runtime import Runtime


async def _identity(runtime: Runtime) -> str | None:
    return None if await runtime.identity.ready() else "its /readyz does not answer 200"


async def _downstream(session: aiohttp.ClientSession, url: str) -> str | None:
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_SECONDS)
    async with session.get(url + "/healthz", timeout=timeout) as response:
        return None if response.status == 200 else f"its /healthz answered {response.status}"


async def readiness_checks(runtime: Runtime) -> list[Check]:
    """Check every dependency at once.

    Only the identity service is required: without it nobody signs in. A downstream that is
    down fails only its own routes, and Redis down leaves this replica on its memory.
    """
    downstreams = [service for service in runtime.upstreams if service is not Service.PORTFOLIO]
    checks = await asyncio.gather(
        probe("identity", _identity(runtime), up_detail="the portfolio's /readyz answers 200"),
        *(
            probe(
                service.value,
                _downstream(runtime.upstreams[service], runtime.upstream_urls[service]),
                up_detail="its /healthz answers 200",
                required=False,
            )
            for service in downstreams
        ),
    )
    condition = runtime.state.condition()
    if condition.backend != "memory":
        checks.insert(1, Check("redis", condition.available, condition.detail, required=False))
    return list(checks)
