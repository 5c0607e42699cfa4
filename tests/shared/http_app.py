"""A bare ASGI app for the protocol tests: `uvicorn tests.shared.http_app:app`.

Every path answers `{"path", "headers", "body"}` (header count, body bytes read) after
reading the whole body; `/early` answers without reading it; `/slow` waits a moment first.
"""

from __future__ import annotations

import asyncio
import json

from starlette.types import Receive, Scope, Send


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    received = 0
    if path != "/early":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body"):
                break
    if path == "/slow":
        await asyncio.sleep(0.5)
    body = json.dumps({"path": path, "headers": len(scope["headers"]), "body": received})
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})
