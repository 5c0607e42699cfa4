"""How much a client may send, and the middleware that caps the request body.

The request head (request line and header fields) is capped earlier, by the server protocol
in `shared.protocol`; a body is capped here, where the app reads it.
"""

from __future__ import annotations

import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.errors import ErrorCode, error_body

# Every body a service reads itself is a few short fields: credentials, roles, a form. The
# gateway's proxy streams `/api/...` bodies to the downstream services and has no such cap.
MAX_BODY_BYTES = 64 * 1024
# The request line and every header field together; a token, an API key and a session
# cookie take a few KiB.
MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100

_CONTENT_LENGTH = b"content-length"


class PayloadTooLarge(HTTPException):
    """A request body larger than the service reads (413 `payload_too_large`)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class BodyLimit:
    """Refuse a request body larger than `max_bytes` with 413 `payload_too_large`.

    The app still decides when to read, so it can refuse a caller without credentials
    before a byte of the body is read. Its first read fails at once when Content-Length
    declares too much (before uvicorn sends `100 Continue`), and a chunked body fails as
    soon as the bytes received pass the cap.

    The connection stays open: uvicorn drops the rest of the body as it arrives, holding
    none of it. Closing instead, with the body still coming, makes the kernel reset the
    connection, and a client still sending (a browser posting a form, the gateway's proxy
    streaming to portfolio) then often sees the reset instead of the 413.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        exceeded = declared is not None and declared > limit
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal exceeded, received
            if exceeded:
                raise PayloadTooLarge(limit)
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise PayloadTooLarge(limit)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except PayloadTooLarge as exc:
            # Only apps without an HTTPException handler (raw ASGI apps) let it get here.
            if started:
                raise
            await send_payload_too_large(send, exc)


async def send_payload_too_large(send: Send, exc: PayloadTooLarge) -> None:
    """Answer 413 with the JSON error body."""
    body = json.dumps(error_body(ErrorCode.PAYLOAD_TOO_LARGE, str(exc.detail))).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == _CONTENT_LENGTH:
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the app sees it
    return None
