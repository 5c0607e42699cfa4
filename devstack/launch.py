"""The uvicorn command line every service is launched with.

The stack, the Procfile, the tests and the bench build their commands here;
docker-compose.yml and the Dockerfile's CMD spell the same flags out, and the tests hold
them to `uvicorn_args`.
"""

from __future__ import annotations

import sys

from shared.protocol import UVICORN_HTTP

HOST = "127.0.0.1"
"""Where every process launched here listens (compose listens on 0.0.0.0 in containers)."""
GATEWAY_APP = "services.api_gateway.app:app"
# No uvicorn access log, whose request line holds the query string (the gateway writes its
# own JSON access log without it); no WebSocket support, since nothing serves one and uvicorn
# logs every handshake with its query string; the HTTP protocol that caps the request head.
UVICORN_ARGS: tuple[str, ...] = ("--no-access-log", "--ws", "none", "--http", UVICORN_HTTP)
# uvicorn would otherwise take the client address from X-Forwarded-For of any loopback
# peer, bypassing GATEWAY_TRUSTED_PROXIES.
APP_ARGS: dict[str, tuple[str, ...]] = {GATEWAY_APP: ("--no-proxy-headers",)}


def uvicorn_args(app: str) -> tuple[str, ...]:
    """Return the flags `app` runs with, after its host and port."""
    return (*UVICORN_ARGS, *APP_ARGS.get(app, ()))


def uvicorn_command(app: str, *, host: str, port: int, python: str = sys.executable) -> list[str]:
    """Return the argv that serves `app` (`module:app`) on `host`:`port`."""
    return [python, "-m", "uvicorn", app, "--host", host, "--port", str(port), *uvicorn_args(app)]
