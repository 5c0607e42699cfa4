"""A TCP proxy on loopback that can hold back one answer, to make a race deterministic.

    with HoldingProxy(portfolio.port) as proxy:        # point the gateway at proxy.url
        hold = proxy.hold(b"POST /internal/identity/authenticate", b"alice")
        ...start the request...
        assert hold.answered.wait(30)                    # the upstream has answered
        ...do what must happen in between...
        hold.release()                                   # the caller gets the answer now

The first request (on any connection) whose bytes contain every marker has its answer held
until `release()`; every other request passes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field

from devstack.ports import free_port

# Bounds every wait of the proxy itself, so a forgotten release never hangs the suite.
PATIENCE_SECONDS = 60.0


@dataclass
class Hold:
    """One answer to hold back."""

    markers: tuple[bytes, ...]
    answered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        """Let the held answer through."""
        self.released.set()


class HoldingProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target_port>, from a background thread."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._armed: Hold | None = None
        self._holds: list[Hold] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def hold(self, *markers: bytes) -> Hold:
        """Hold the answer to the next request containing every marker."""
        hold = Hold(markers=markers)
        self._holds.append(hold)
        self._armed = hold
        return hold

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        start = asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        for hold in self._holds:
            hold.release()

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _connection(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            client_writer.close()
            return
        held: list[Hold] = []
        request = bytearray()

        async def to_upstream() -> None:
            while data := await client_reader.read(65536):
                armed = self._armed
                if armed is not None and not held:
                    request.extend(data)
                    if all(marker in request for marker in armed.markers):
                        self._armed = None
                        held.append(armed)
                upstream_writer.write(data)
                await upstream_writer.drain()
            with contextlib.suppress(OSError):
                upstream_writer.write_eof()

        async def to_client() -> None:
            while data := await upstream_reader.read(65536):
                request.clear()  # an answer: the next bytes belong to a new request
                if held and not held[0].released.is_set():
                    held[0].answered.set()
                    await asyncio.to_thread(held[0].released.wait, PATIENCE_SECONDS)
                client_writer.write(data)
                await client_writer.drain()
            client_writer.close()

        try:
            await asyncio.gather(to_upstream(), to_client())
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a peer went away, or the proxy is stopping
        finally:
            upstream_writer.close()
            client_writer.close()
