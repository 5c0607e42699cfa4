"""The gateway's connection pools give up an idle connection before the server behind it.

A request written on a pooled connection at the moment the server closes it for idling is
lost ("server disconnected without sending a response"); aiohttp retries only idempotent
methods and httpx none, so a login or a proxied POST would fail with a 502. One such 502 in
a rotation load test showed it: both clients kept connections as long as uvicorn does.
"""

from __future__ import annotations

import uvicorn
from pydantic import SecretStr

from services.api_gateway.config import GatewaySecrets, Settings
from services.api_gateway.runtime import (
    IDLE_CONNECTION_SECONDS,
    identity_http,
    upstream_pool,
    upstream_session,
)
from shared.roles import Service

NGINX_KEEPALIVE_SECONDS = 75.0


def test_idle_connections_are_closed_before_uvicorn_and_nginx_close_them():
    uvicorn_keepalive = uvicorn.Config("x:app").timeout_keep_alive
    # A second of margin for a loaded event loop on either side.
    assert uvicorn_keepalive - 1 >= IDLE_CONNECTION_SECONDS
    assert IDLE_CONNECTION_SECONDS < NGINX_KEEPALIVE_SECONDS


async def test_both_pools_use_the_idle_limit():
    settings = Settings()
    secrets = GatewaySecrets(
        jwt_private_key=SecretStr("unused"),
        assertion_private_key=SecretStr("unused"),
        identity_service_token=SecretStr("unused"),
    )
    session = upstream_session(settings)
    client = identity_http(settings, secrets)
    proxy = upstream_pool(settings, Service.TRADING)
    try:
        # The proxy's own client (services/api_gateway/upstream.py), every downstream.
        assert proxy.idle_seconds == IDLE_CONNECTION_SECONDS
        assert session.connector is not None
        assert session.connector._keepalive_timeout == IDLE_CONNECTION_SECONDS
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._keepalive_expiry == IDLE_CONNECTION_SECONDS
    finally:
        await session.close()
        await client.aclose()
        await proxy.close()
