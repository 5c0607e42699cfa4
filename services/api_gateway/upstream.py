"""A small keep-alive HTTP/1.1 client for the proxy's hot path.

aiohttp's client was the largest share of the gateway's CPU per proxied request (its session,
request and response objects, header preparation, timers and stream readers). The proxy needs
far less: one origin per pool, requests whose headers are already checked by the server that
received them, and a response handed on as raw header pairs and body chunks. This does that
on asyncio's protocol API with httptools (llhttp, the parser uvicorn already uses).

What it guarantees, each tested in tests/api_gateway/test_upstream.py:
- At most `max_connections` connections per pool; waiting for one and connecting together
  take at most `pool_timeout` (`ConnectTimeout`), connecting alone `connect_timeout`.
- Each wait for data from the server is bounded by `read_timeout` (`ReadTimeout`).
- A connection goes back to the pool only when its response was read to the end, the server
  allows keep-alive, and the request was written whole; one idle for `idle_seconds` or more is
  closed instead of reused (servers close idle connections themselves, uvicorn after 5 s: a
  request written on one at that moment would be lost).
- A request that fails on a reused connection before any byte of the answer arrived is sent
  again once on a new connection when it can be: its method is idempotent and its body is not
  a stream. Anything else is reported, never silently repeated.
- Responses are bounded: a head larger than `MAX_HEAD_BYTES` or a malformed answer is
  `ConnectionBroken`; a body is read into memory only by `read()` (the caller decides when),
  otherwise streamed with the socket paused while the consumer is behind.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from typing import Final, cast
from urllib.parse import urlsplit

import httptools

MAX_HEAD_BYTES: Final = 64 * 1024
# Stop reading from the socket while this much of a streamed body waits for its consumer.
BUFFER_HIGH_WATER: Final = 256 * 1024
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
IDEMPOTENT: Final = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class UpstreamError(Exception):
    """The request could not be completed; the message names the cause, never data."""


class ConnectTimeout(UpstreamError):
    """No connection (from the pool or new) within the time allowed."""


class ConnectFailed(UpstreamError):
    """The server could not be reached (refused, unreachable, name not found, TLS failed)."""


class ReadTimeout(UpstreamError, TimeoutError):
    """The server sent nothing for longer than the read timeout."""


class ConnectionBroken(UpstreamError):
    """The connection closed early or the server's answer was not valid HTTP/1.1."""


class PoolClosed(UpstreamError):
    """The pool was closed (the gateway is shutting down)."""


class _Retry(Exception):
    """A reused connection failed before the answer began: send again on a new one."""


class Response:
    """A response's status and header pairs (names lower-cased); its body through `read()`
    or `chunks()`.

    Leaving `async with` (or calling `release()`) hands the connection back to the pool if the
    body was read to its end, and closes it otherwise.
    """

    __slots__ = ("_connection", "headers", "status")

    def __init__(self, connection: _Connection, status: int, headers: list[tuple[bytes, bytes]]):
        self._connection = connection
        self.status = status
        self.headers = headers

    @property
    def content_length(self) -> int | None:
        return self._connection.content_length

    def read(self) -> Coroutine[None, None, bytes]:
        """Return the whole body (awaited: the connection's own coroutine, not one more)."""
        return self._connection.read_all()

    async def chunks(self) -> AsyncIterator[bytes]:
        """Yield the body as it arrives."""
        connection = self._connection
        while True:
            chunk = await connection.next_chunk()
            if not chunk:
                return
            yield chunk

    def release(self) -> None:
        self._connection.finish()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: writes a request, parses its response with httptools."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool
        self._loop = pool._loop
        # Set by connection_made, which asyncio calls before create_connection returns us.
        self._transport: asyncio.Transport = cast("asyncio.Transport", None)
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self.closed = False
        self.idle_since = 0.0
        self.used = False  # served a response before: a failure may be a stale connection
        self._reset()

    def _reset(self) -> None:
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._head_done = False
        self._head_only = False
        self._until_close = False
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._complete = False
        self._keep_alive = False
        self._chunked_answer = False
        self._received = False
        self._error: UpstreamError | None = None
        self._request_written = False
        self._read_paused = False
        self.content_length: int | None = None

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast("asyncio.Transport", transport)

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self._complete:
            # Bytes after a complete answer: the server does not speak HTTP/1.1 as agreed.
            self._fail(ConnectionBroken("sent data after its response"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ConnectionBroken("switched protocols"))
            return
        except httptools.HttpParserError:
            # A callback's own refusal (kept in _error) or llhttp's.
            self._fail(self._error or ConnectionBroken("sent an answer that is not valid HTTP/1.1"))
            return
        self._wake()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        self._stop_timer()
        self._pool._forget(self)
        if not was_closed and not self._complete:
            if self._head_done and self._until_close and exc is None:
                # A body delimited by the end of the connection (no length, not chunked).
                self._complete = True
                self._keep_alive = False
            else:
                self._error = self._error or ConnectionBroken("closed the connection early")
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        if self._complete:
            # A second answer to one request: the server does not speak HTTP/1.1 as agreed.
            self._refuse("sent data after its response")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value) + 4
        if self._head_bytes > MAX_HEAD_BYTES:
            self._refuse("sent a response head over the size limit")
        # Lower-cased once here: the framing is read from them now, the proxy relays them.
        name = name.lower()
        if name == b"content-length":
            self.content_length = int(value)  # llhttp checked it is a number
        elif name == b"transfer-encoding":
            self._chunked_answer = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                self._refuse("switched protocols")
            # An interim answer (103 Early Hints): wait for the real one.
            self._headers = []
            self._head_bytes = 0
            self.content_length = None
            self._chunked_answer = False
            return
        self._status = status
        self._head_done = True
        self._until_close = (
            self.content_length is None and not self._chunked_answer and status not in (204, 304)
        )
        if self._head_only:
            # llhttp cannot be told a HEAD answer has no body: end it here and never reuse
            # this connection (the parser would take the next answer as this one's body).
            self._complete = True
            self._keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self._head_only:
            self._refuse("sent a body in answer to HEAD")
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > BUFFER_HIGH_WATER and not self._read_paused:
            self._transport.pause_reading()
            self._read_paused = True

    def on_message_complete(self) -> None:
        if not self._head_done:
            return  # the end of an interim answer
        self._complete = True
        self._keep_alive = self._parser.should_keep_alive()

    # --- helpers ---

    def _refuse(self, reason: str) -> None:
        """Stop the parser from a callback; `data_received` reports `reason`."""
        self._error = ConnectionBroken(reason)
        raise self._error

    def _fail(self, error: UpstreamError) -> None:
        self._error = error
        self.closed = True
        self._stop_timer()
        self._transport.abort()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _check_deadline(self) -> None:
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return  # nobody waits now: the next wait arms the timer again
        if self._loop.time() < self._deadline:
            # A later wait moved the deadline on: sleep until then.
            self._timer = self._loop.call_at(self._deadline, self._check_deadline)
            return
        waiter.set_exception(ReadTimeout("did not answer in time"))

    async def _wait(self) -> None:
        """Wait for more of the answer, at most the read timeout."""
        # One timer per connection, moved on lazily: a wait only sets its deadline, and the
        # timer (armed at the first wait's deadline) re-arms itself for the current one when
        # it fires early. Arming and cancelling a timer per wait cost more than the rest of it.
        loop = self._loop
        self._deadline = loop.time() + self._pool.read_timeout
        if self._timer is None:
            self._timer = loop.call_at(self._deadline, self._check_deadline)
        waiter = self._waiter = loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- the request ---

    async def exchange(
        self, head: bytes, body: bytes | AsyncIterator[bytes] | None, *, head_only: bool
    ) -> Response:
        """Send a request and return once its response head has arrived."""
        self._reset()
        self._head_only = head_only
        transport = self._transport
        reused = self.used
        if isinstance(body, bytes) or body is None:
            transport.write(head + body if body else head)
            self._request_written = True
        else:
            transport.write(head)
            await self._write_stream(body)
        try:
            while not self._head_done:
                if self._error is not None or self.closed:
                    raise self._error or ConnectionBroken("closed the connection early")
                await self._wait()
        except UpstreamError:
            self.close()
            if reused and not self._received:
                raise _Retry from None
            raise
        return Response(self, self._status, self._headers)

    async def _write_stream(self, body: AsyncIterator[bytes]) -> None:
        transport = self._transport
        chunked = self._chunked
        try:
            async for chunk in body:
                if self.closed:
                    # The server answered early or went away: stop sending, read its answer.
                    return
                if not chunk:
                    continue
                if chunked:
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    self._drained = self._loop.create_future()
                    await self._drained
                    self._drained = None
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
        except BaseException:
            self.close()
            raise
        self._request_written = True

    _chunked = False

    async def read_all(self) -> bytes:
        while not self._complete:
            await self._more()
        body = b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        return body

    async def next_chunk(self) -> bytes:
        while not self._body:
            if self._complete:
                return b""
            await self._more()
        chunk = self._body.popleft()
        self._buffered -= len(chunk)
        if self._read_paused and self._buffered <= BUFFER_HIGH_WATER // 2:
            self._read_paused = False
            self._transport.resume_reading()
        return chunk

    async def _more(self) -> None:
        if self._error is not None:
            self.close()
            raise self._error
        if self.closed:
            self.close()
            raise ConnectionBroken("closed the connection early")
        await self._wait()
        if self._error is not None:
            self.close()
            raise self._error

    def finish(self) -> None:
        """The caller is done with the response: back to the pool, or closed."""
        if (
            self._complete
            and self._keep_alive
            and self._request_written
            and not self._body
            and not self.closed
        ):
            self.used = True
            self.idle_since = time.monotonic()
            self._pool._give_back(self)
        else:
            self.close()

    def close(self) -> None:
        self._stop_timer()
        if not self.closed:
            self.closed = True
            self._transport.abort()
        self._pool._forget(self)


class Pool:
    """Keep-alive connections to one origin (`http://host:port` or `https://...`)."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int,
        connect_timeout: float,
        pool_timeout: float,
        read_timeout: float,
        idle_seconds: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the upstream URL must be http:// or https:// with a host")
        self._host = parts.hostname
        # Prefixed to every request target: the service's own path under its URL, if any.
        self.base_path = parts.path.rstrip("/").encode("ascii")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = (
            (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        )
        default_port = (parts.scheme == "http" and self._port == 80) or (
            parts.scheme == "https" and self._port == 443
        )
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = (host if default_port else f"{host}:{self._port}").encode("idna")
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.pool_timeout = pool_timeout
        self.read_timeout = read_timeout
        self.idle_seconds = idle_seconds
        self._loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._opening = 0
        self.closed = False

    @property
    def open_connections(self) -> int:
        return len(self._idle) + len(self._busy)

    async def request(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None = None,
    ) -> Response:
        """Send `method target` with `headers` (names lower-case, no Host) and return the
        response once its head has arrived. The caller must release it (`async with`)."""
        head, chunked = self._head(method, target, headers, body)
        replayable = method in IDEMPOTENT and not isinstance(body, AsyncIterator)
        deadline = self._loop.time() + self.pool_timeout
        for attempt in range(2):
            connection = await self._acquire(deadline, fresh=attempt > 0)
            connection._chunked = chunked
            try:
                return await connection.exchange(head, body, head_only=method == "HEAD")
            except _Retry:
                if not replayable:
                    raise ConnectionBroken("closed the connection early") from None
            except BaseException:
                connection.close()
                raise
        raise ConnectionBroken("closed the connection early")

    def _head(
        self,
        method: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes] | None,
    ) -> tuple[bytes, bool]:
        # One join of the parts: faster than formatting a line per header.
        parts = [method.encode(), b" ", target, b" HTTP/1.1\r\nhost: ", self._host_header]
        has_length = False
        for name, value in headers:
            if name == b"content-length":
                has_length = True
            parts += (b"\r\n", name, b": ", value)
        chunked = False
        if body is None or isinstance(body, bytes):
            if not has_length and (body or method in BODY_METHODS):
                parts.append(b"\r\ncontent-length: %d" % len(body or b""))
        elif body is not None and not has_length:
            parts.append(b"\r\ntransfer-encoding: chunked")
            chunked = True
        parts.append(b"\r\n\r\n")
        return b"".join(parts), chunked

    async def _acquire(self, deadline: float, *, fresh: bool) -> _Connection:
        """Return an idle connection (most recently used first) or a new one."""
        idle = self._idle
        while True:
            if self.closed:
                raise PoolClosed("the pool is closed")
            now = time.monotonic()
            while idle and not fresh:
                connection = idle.pop()
                if not connection.closed and now - connection.idle_since < self.idle_seconds:
                    self._busy.add(connection)
                    return connection
                connection.close()
            # Idle connections are left out of the count: a request reaches here with none
            # (all taken or closed above), or as a fresh retry whose failed connection has
            # just left the pool, so idle + busy + opening stays within the limit either way.
            if len(self._busy) + self._opening < self.max_connections:
                break
            await self._wait_for_room(deadline)
        return await self._open(deadline)

    async def _wait_for_room(self, deadline: float) -> None:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                raise TimeoutError
            async with asyncio.timeout(remaining):
                await waiter
        except BaseException as exc:
            # Woken, then timed out or cancelled (the caller went away) before using it:
            # pass the wake-up on, or the next waiter sleeps until its own deadline.
            if waiter.done() and not waiter.cancelled():
                self._next_waiter()
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise ConnectTimeout("did not accept a connection in time") from None
            raise

    async def _open(self, deadline: float) -> _Connection:
        self._opening += 1
        try:
            timeout = min(self.connect_timeout, max(0.0, deadline - self._loop.time()))
            try:
                async with asyncio.timeout(timeout):
                    _, connection = await self._loop.create_connection(
                        lambda: _Connection(self), self._host, self._port, ssl=self._ssl
                    )
            except TimeoutError:
                raise ConnectTimeout("did not accept a connection in time") from None
            except OSError:
                raise ConnectFailed("is unreachable") from None
        except BaseException:
            self._opening -= 1
            self._next_waiter()  # the place it held is free again
            raise
        self._opening -= 1
        if self.closed:
            connection.close()
            raise PoolClosed("the pool is closed")
        self._busy.add(connection)
        return connection

    def _give_back(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if self.closed:
            connection.close()
            return
        self._idle.append(connection)
        self._next_waiter()

    def _forget(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        self._next_waiter()

    def _next_waiter(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection; requests in flight fail with `ConnectionBroken`."""
        self.closed = True
        for connection in [*self._idle, *self._busy]:
            connection.close()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
