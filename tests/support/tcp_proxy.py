"""A TCP proxy on loopback that a test can cut, restore and slow down (e.g. in front of Redis).

    with TcpProxy(redis_port) as proxy:          # point the client at proxy.port
        proxy.cut()                              # open connections drop, new ones are refused
        proxy.restore()                          # forwards again
        proxy.delay = 0.45                       # every chunk waits this long, each way

Runs its own event loop in a background thread, so synchronous and asynchronous tests (and
other processes) can use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from devstack.ports import free_port

_CHUNK = 65536


class TcpProxy:
    """Forward 127.0.0.1:<port> to 127.0.0.1:<target_port>, from a background thread."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.delay = 0.0
        self._cut = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        """Return the URL a client uses to reach the target through this proxy."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def cut(self) -> None:
        """Drop every open connection and refuse new ones until `restore()`."""
        self._cut = True

        def close_all() -> None:
            for writer in list(self._writers):
                writer.close()

        self._loop.call_soon_threadsafe(close_all)

    def restore(self) -> None:
        """Forward again."""
        self._cut = False

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        start = asyncio.start_server(self._connection, "127.0.0.1", self.port)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        finally:
            for each in (writer, up_writer):
                self._writers.discard(each)
                each.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while not self._cut:
                chunk = await reader.read(_CHUNK)
                if not chunk or self._cut:
                    break
                if self.delay > 0:
                    await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        writer.close()
