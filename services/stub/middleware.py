"""Report a start-up failure as its one-line message instead of a traceback."""

from __future__ import annotations

import sys

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.stub.errors import StartupError


class StartupErrorMiddleware:
    """Replace the traceback of a failed lifespan start-up by the `StartupError` message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_short(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                # Starlette sends this from inside its `except` block, so the error is current.
                error = sys.exc_info()[1]
                if isinstance(error, StartupError):
                    message = {**message, "message": str(error)}
            await send(message)

        await self.app(scope, receive, send_short)
