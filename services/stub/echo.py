"""Every method and path but `/healthz`: echo the verified caller (a raw ASGI app).

The stub is the upstream of the benchmark, so its hot path skips FastAPI's routing and
dependency machinery the same way the gateway's proxy does.
"""

from __future__ import annotations

import json

from starlette.types import Receive, Scope, Send

from services.stub.errors import AssertionRefused
from services.stub.runtime import Runtime
from shared.assertion import ASSERTION_HEADER, REQUEST_ID_HEADER, InvalidAssertionError
from shared.logs import note_user

_ASSERTION = ASSERTION_HEADER.encode()
_REQUEST_ID = REQUEST_ID_HEADER.encode()


async def _send_json(send: Send, status: int, payload: object) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class EchoApp:
    """Answer `{"service", "method", "path", "user", "roles", "request_id"}` from the assertion."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        runtime: Runtime = scope["app"].state.runtime
        assertion = request_id = None
        for name, value in scope["headers"]:
            if name == _ASSERTION:
                assertion = value.decode("latin-1")
            elif name == _REQUEST_ID:
                request_id = value.decode("latin-1")
        # Drain the body so keep-alive connections stay usable.
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        try:
            caller = runtime.verifier.verify(assertion)
        except InvalidAssertionError as exc:
            # Answered by the app's handler, like any other error.
            raise AssertionRefused(f"refused: {exc}") from None
        note_user(caller.username)
        await _send_json(
            send,
            200,
            {
                "service": caller.service,
                "method": scope["method"],
                "path": scope["path"],
                "user": caller.username,
                "roles": list(caller.roles),
                "request_id": request_id,
            },
        )
