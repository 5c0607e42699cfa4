"""Each state test runs against both backends: in memory, and the shared Redis."""

from collections.abc import AsyncIterator

import pytest

from devstack.databases import SHARED_REDIS_URL, shared_prefix
from services.api_gateway.state import GatewayState, MemoryState, create_state


@pytest.fixture
def redis_prefix():
    with shared_prefix() as prefix:
        yield prefix


@pytest.fixture
def redis_timing() -> dict[str, float]:
    """The Redis backend's socket `timeout` and `budget` per call: the gateway's defaults. A
    test proving something other than the timing parametrizes it with more room."""
    return {}


@pytest.fixture(params=["memory", "redis"])
async def state(
    request: pytest.FixtureRequest, redis_timing: dict[str, float]
) -> AsyncIterator[GatewayState]:
    if request.param == "memory":
        backend: GatewayState = MemoryState()
        yield backend
        return
    with shared_prefix() as prefix:
        backend = create_state(SHARED_REDIS_URL, prefix=prefix, **redis_timing)
        await backend.start()
        try:
            yield backend
        finally:
            await backend.close()
