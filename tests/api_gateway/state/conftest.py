"""Each state test runs against both backends: in memory, and the shared Redis."""

from collections.abc import AsyncIterator

import pytest

from devstack.databases import SHARED_REDIS_URL, shared_prefix
from services.api_gateway.state import GatewayState, MemoryState, create_state


@pytest.fixture
def redis_prefix():
    with shared_prefix() as prefix:
        yield prefix


@pytest.fixture(params=["memory", "redis"])
async def state(request: pytest.FixtureRequest) -> AsyncIterator[GatewayState]:
    if request.param == "memory":
        backend: GatewayState = MemoryState()
        yield backend
        return
    with shared_prefix() as prefix:
        backend = create_state(SHARED_REDIS_URL, prefix=prefix)
        await backend.start()
        try:
            yield backend
        finally:
            await backend.close()
