"""The proxy's own HTTP/1.1 client (services/api_gateway/upstream.py), tested as a library.

Each test runs a real TCP server on 127.0.0.1 that writes its answers byte for byte, so the
client meets what servers really send: keep-alive and `Connection: close`, chunked and
close-delimited bodies, HEAD, interim answers, malformed and oversized heads, silence,
connections closed mid-answer or while idle, and a full pool.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from services.api_gateway.upstream import (
    BUFFER_HIGH_WATER,
    ConnectFailed,
    ConnectionBroken,
    ConnectTimeout,
    Pool,
    PoolClosed,
    ReadTimeout,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Server:
    """Counts connections and the requests (heads) it read."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.heads: list[bytes] = []
        self.port = 0


async def read_head(reader: asyncio.StreamReader, server: Server) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    server.heads.append(head)
    return head


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[Server]:
    server = Server()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.open += 1
        server.most_open = max(server.most_open, server.open)
        try:
            await handler(reader, writer, server.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            server.open -= 1
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
    """Read a request and never answer (until the client goes)."""
    await read_head(reader, servers[-1])
    await reader.read()


def answering_after(delay: float) -> Handler:
    """Answer every request on a connection with OK after `delay` seconds."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_head(reader, servers[-1])
            await asyncio.sleep(delay)
            writer.write(OK)
            await writer.drain()

    return handler


def keep_alive(answer: bytes = OK) -> Handler:
    """Answer every request on a connection with `answer` until the client closes."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            servers[-1].heads.append(head)
            writer.write(answer)
            await writer.drain()

    return handler


servers: list[Server] = []


@asynccontextmanager
async def running(handler: Handler) -> AsyncIterator[Server]:
    async with serve(handler) as server:
        servers.append(server)
        yield server


def pool_for(server: Server, **overrides: float) -> Pool:
    return pool_at(f"http://127.0.0.1:{server.port}", **overrides)


def pool_at(url: str, **overrides: float) -> Pool:
    options: dict[str, float] = {
        "max_connections": 4,
        "connect_timeout": 2.0,
        "pool_timeout": 5.0,
        "read_timeout": 5.0,
        "idle_seconds": 3.0,
    }
    options.update(overrides)
    return Pool(
        url,
        max_connections=int(options["max_connections"]),
        connect_timeout=options["connect_timeout"],
        pool_timeout=options["pool_timeout"],
        read_timeout=options["read_timeout"],
        idle_seconds=options["idle_seconds"],
    )


async def get(pool: Pool, target: bytes = b"/x", method: str = "GET") -> tuple[int, bytes]:
    async with await pool.request(method, target, []) as response:
        return response.status, await response.read()


async def test_the_request_head_is_written_as_given_with_host_and_no_other_header() -> None:
    async with running(keep_alive()) as server:
        pool = pool_for(server)
        headers = [(b"x-request-id", b"abc"), (b"accept", b"*/*")]
        async with await pool.request("GET", b"/a/b%2Fc?q=1&r", headers) as response:
            assert (response.status, await response.read()) == (200, b"ok")
        await pool.close()
    host = f"127.0.0.1:{server.port}".encode()
    assert server.heads == [
        b"GET /a/b%2Fc?q=1&r HTTP/1.1\r\nhost: " + host + b"\r\n"
        b"x-request-id: abc\r\naccept: */*\r\n\r\n"
    ]


async def test_a_service_url_with_a_path_prefixes_every_target() -> None:
    async with running(keep_alive()) as server:
        pool = pool_at(
            f"http://127.0.0.1:{server.port}/base/",
            max_connections=1,
            connect_timeout=1,
            pool_timeout=1,
            read_timeout=1,
            idle_seconds=3,
        )
        assert pool.base_path == b"/base"
        await get(pool, pool.base_path + b"/x")
        await pool.close()
    assert server.heads[0].startswith(b"GET /base/x HTTP/1.1\r\n")


async def test_bodies_are_sent_with_their_length_and_streams_chunked() -> None:
    received: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        server = servers[-1]
        while True:
            head = await read_head(reader, server)
            if b"transfer-encoding: chunked" in head:
                body = b""
                while True:
                    size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
                    chunk = await reader.readexactly(size + 2)
                    if size == 0:
                        break
                    body += chunk[:-2]
            else:
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
            received.append(body)
            writer.write(OK)

    async def stream() -> AsyncIterator[bytes]:
        yield b"one "
        yield b""
        yield b"two"

    async with running(handler) as server:
        pool = pool_for(server)
        for body in (b"payload", None, stream()):
            async with await pool.request("POST", b"/t", [], body) as response:
                assert response.status == 200
                await response.read()
        # A stream with the caller's own length goes as it is, unchunked.
        async with await pool.request(
            "PUT", b"/t", [(b"content-length", b"7")], stream()
        ) as response:
            await response.read()
        await pool.close()
    assert received == [b"payload", b"", b"one two", b"one two"]
    assert b"content-length: 7\r\n" in server.heads[0]
    assert b"content-length: 0\r\n" in server.heads[1]
    assert b"transfer-encoding: chunked\r\n" in server.heads[2]
    assert b"transfer-encoding" not in server.heads[3]
    assert server.connections == 1


async def test_one_connection_serves_requests_one_after_another() -> None:
    async with running(keep_alive()) as server:
        pool = pool_for(server)
        for _ in range(5):
            assert await get(pool) == (200, b"ok")
        assert pool.open_connections == 1  # idle
        first = await pool.request("GET", b"/x", [])
        second = await pool.request("GET", b"/y", [])
        async with first, second:
            assert pool.open_connections == 2  # both in use
            assert (await first.read(), await second.read()) == (b"ok", b"ok")
        assert pool.open_connections == 2  # both idle
        await pool.close()
    assert server.connections == 2


async def test_connection_close_from_the_server_is_honoured() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
    async with running(keep_alive(answer)) as server:
        pool = pool_for(server)
        assert await get(pool) == (200, b"ok")
        assert await get(pool) == (200, b"ok")
        await pool.close()
    assert server.connections == 2


async def test_an_idle_connection_is_not_reused_after_the_idle_limit() -> None:
    async with running(keep_alive()) as server:
        pool = pool_for(server, idle_seconds=0.2)
        await get(pool)
        await get(pool)
        await asyncio.sleep(0.3)
        await get(pool)
        await pool.close()
    assert server.connections == 2


async def test_a_connection_the_server_closed_while_idle_is_dropped() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(OK)
        await writer.drain()
        # ...and close at once, as a server ending an idle connection does.

    async with running(handler) as server:
        pool = pool_for(server)
        await get(pool)
        await asyncio.sleep(0.1)
        assert pool.open_connections == 0
        assert await get(pool) == (200, b"ok")
        await pool.close()
    assert server.connections == 2


def closes_on_second_request() -> Handler:
    """Answer the first request, then read the next and close without answering (a server
    closing an idle connection just as the request arrives); new connections work."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        server = servers[-1]
        await read_head(reader, server)
        if n == 1:
            writer.write(OK)
            await writer.drain()
            await read_head(reader, server)
            return  # closed without an answer
        writer.write(OK)
        await writer.drain()
        while True:
            await read_head(reader, server)
            writer.write(OK)

    return handler


async def test_an_idempotent_request_lost_on_a_reused_connection_is_sent_again_once() -> None:
    async with running(closes_on_second_request()) as server:
        pool = pool_for(server)
        await get(pool)
        assert await get(pool, b"/again") == (200, b"ok")
        await pool.close()
    assert [head.split(b"\r\n")[0] for head in server.heads] == [
        b"GET /x HTTP/1.1",
        b"GET /again HTTP/1.1",
        b"GET /again HTTP/1.1",
    ]


async def test_a_post_lost_on_a_reused_connection_is_reported_not_repeated() -> None:
    async with running(closes_on_second_request()) as server:
        pool = pool_for(server)
        await get(pool)
        with pytest.raises(ConnectionBroken, match="closed the connection early"):
            await pool.request("POST", b"/book", [], b"{}")
        await pool.close()
    assert [head.split(b"\r\n")[0] for head in server.heads] == [
        b"GET /x HTTP/1.1",
        b"POST /book HTTP/1.1",
    ]


async def test_a_failure_on_a_new_connection_is_not_retried() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])

    async with running(handler) as server:
        pool = pool_for(server)
        with pytest.raises(ConnectionBroken):
            await get(pool)
        await pool.close()
    assert server.connections == 1


async def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            head = await read_head(reader, servers[-1])
            if head.startswith(b"GET /close "):
                writer.write(until_close)
                await writer.drain()
                return
            writer.write(chunked)
            await writer.drain()

    async with running(handler) as server:
        pool = pool_for(server)
        assert await get(pool, b"/chunked") == (200, b"abcdefg")
        async with await pool.request("GET", b"/chunked", []) as response:
            assert response.content_length is None
            assert b"".join([chunk async for chunk in response.chunks()]) == b"abcdefg"
        assert pool.open_connections == 1  # a chunked answer keeps the connection
        assert await get(pool, b"/close") == (200, b"all of it")
        assert pool.open_connections == 0
        await pool.close()
    assert server.connections == 1


@pytest.mark.parametrize("status", [b"303 See Other", b"404 Not Found", b"500 Oops"])
async def test_any_answer_but_204_and_304_may_end_its_body_with_the_connection(
    status: bytes,
) -> None:
    answer = b"HTTP/1.1 " + status + b"\r\nconnection: close\r\n\r\nthe whole body"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(answer)
        await writer.drain()

    async with running(handler) as server:
        pool = pool_for(server)
        assert await get(pool) == (int(status[:3]), b"the whole body")
        assert pool.open_connections == 0
        await pool.close()


async def test_head_answers_have_no_body_whatever_their_length_says() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"
    async with running(keep_alive(answer)) as server:
        pool = pool_for(server, read_timeout=1.0)
        started = time.monotonic()
        async with await pool.request("HEAD", b"/x", []) as response:
            assert response.content_length == 10
            assert await response.read() == b""
        assert time.monotonic() - started < 0.5
        # Not reused: the parser cannot be told the next bytes start a new answer.
        assert pool.open_connections == 0
        assert await get(pool, method="HEAD") == (200, b"")
        await pool.close()


async def test_interim_and_bodiless_answers() -> None:
    early_hints = b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n" + OK
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    async with running(keep_alive(early_hints)) as server:
        pool = pool_for(server)
        async with await pool.request("GET", b"/x", []) as response:
            assert response.status == 200
            assert response.headers == [(b"content-length", b"2")]
            assert await response.read() == b"ok"
        await pool.close()
    async with running(keep_alive(no_content)) as server:
        pool = pool_for(server)
        assert await get(pool) == (204, b"")
        assert await get(pool) == (204, b"")
        await pool.close()
    assert server.connections == 1


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n", "not valid HTTP/1.1"),
        (b"NOT HTTP AT ALL\r\n\r\n", "not valid HTTP/1.1"),
        (b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n", "over the size limit"),
        (b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "closed the connection early"),
        # A chunked body cut off by the end of the connection is not a whole answer, whatever
        # case the server writes the header name in.
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
            "closed the connection early",
        ),
    ],
)
async def test_broken_answers_are_reported_by_cause(answer: bytes, reason: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(answer)
        await writer.drain()

    async with running(handler) as server:
        pool = pool_for(server)
        with pytest.raises(ConnectionBroken, match=reason):
            await get(pool)
        assert pool.open_connections == 0
        await pool.close()


async def test_bytes_after_a_complete_answer_end_the_connection() -> None:
    async with running(keep_alive(OK + b"HTTP/1.1 200 OK\r\n")) as server:
        pool = pool_for(server)
        assert await get(pool) == (200, b"ok")
        await asyncio.sleep(0.05)
        assert await get(pool) == (200, b"ok")
        await pool.close()
    assert server.connections == 2


async def test_a_silent_server_times_out_and_its_connection_is_closed() -> None:
    async with running(silent) as server:
        pool = pool_for(server, read_timeout=0.3)
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await get(pool)
        assert 0.25 < time.monotonic() - started < 2.0
        assert pool.open_connections == 0
        await pool.close()


async def test_a_body_that_stalls_times_out_while_streaming() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nfirst")
        await writer.drain()
        await reader.read()

    async with running(handler) as server:
        pool = pool_for(server, read_timeout=0.3)
        async with await pool.request("GET", b"/x", []) as response:
            chunks = response.chunks()
            assert await anext(chunks) == b"first"
            with pytest.raises(ReadTimeout):
                await anext(chunks)
        assert pool.open_connections == 0
        await pool.close()


async def test_header_names_come_back_lower_cased_whatever_case_the_server_wrote() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Mixed-Case: Value\r\n\r\nok"
    async with running(keep_alive(answer)) as server:
        pool = pool_for(server)
        for _ in range(2):  # its framing read from `Content-Length`: the connection is reused
            async with await pool.request("GET", b"/x", []) as response:
                assert response.content_length == 2
                assert response.headers == [
                    (b"content-length", b"2"),
                    (b"x-mixed-case", b"Value"),
                ]
                assert await response.read() == b"ok"
        await pool.close()
    assert server.connections == 1


async def test_each_wait_has_the_whole_read_timeout_however_long_the_answer_takes() -> None:
    # One timer per connection, moved on lazily: a body that keeps arriving, each part well
    # within the read timeout, is read to its end however long it takes in all.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_head(reader, servers[-1])
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\n")
            for part in (b"ab", b"cd", b"ef"):
                await asyncio.sleep(0.2)
                writer.write(part)
                await writer.drain()

    async with running(handler) as server:
        pool = pool_for(server, read_timeout=0.3)
        for _ in range(2):  # the second on the reused connection, its timer already armed
            started = time.monotonic()
            assert await get(pool) == (200, b"abcdef")
            assert time.monotonic() - started > 0.55
        await pool.close()
    assert server.connections == 1


async def test_the_read_timer_firing_after_the_answer_is_quiet() -> None:
    # The timer armed for an answer outlives it (moved on lazily, never cancelled): when it
    # fires with nobody waiting it must do nothing, not fail inside the event loop.
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        async with running(keep_alive()) as server:
            pool = pool_for(server, read_timeout=0.1)
            assert await get(pool) == (200, b"ok")
            await asyncio.sleep(0.3)  # the deadline passes with the connection idle
            assert await get(pool) == (200, b"ok")
            await asyncio.sleep(0.3)
            await pool.close()
    finally:
        loop.set_exception_handler(previous)
    assert errors == []
    assert server.connections == 1


async def test_a_reused_connection_that_stalls_times_out_in_time() -> None:
    # The timer armed by an earlier request's waits must not outlive its use: a stall on a
    # reused connection is reported after the read timeout, not later, not sooner.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(OK)
        await writer.drain()
        await read_head(reader, servers[-1])
        writer.write(b"HTTP/1.1 200 OK\r\n")  # some of the answer: not sent again, reported
        await writer.drain()
        await reader.read()

    async with running(handler) as server:
        pool = pool_for(server, read_timeout=0.4)
        assert await get(pool) == (200, b"ok")
        await asyncio.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(ReadTimeout):
            await get(pool)
        assert 0.35 < time.monotonic() - started < 1.0
        assert pool.open_connections == 0
        await pool.close()
    assert server.connections == 1


async def test_a_refused_connection_is_reported_as_unreachable() -> None:
    async with running(keep_alive()) as server:
        port = server.port
    pool = pool_at(
        f"http://127.0.0.1:{port}",
        max_connections=1,
        connect_timeout=1,
        pool_timeout=1,
        read_timeout=1,
        idle_seconds=3,
    )
    with pytest.raises(ConnectFailed, match="unreachable"):
        await get(pool)
    await pool.close()


async def test_a_full_pool_waits_then_gives_up_in_time() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        while True:
            await read_head(reader, servers[-1])
            await release.wait()
            writer.write(OK)
            await writer.drain()

    async with running(handler) as server:
        pool = pool_for(server, max_connections=1, pool_timeout=0.3)
        first = asyncio.create_task(get(pool))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(ConnectTimeout, match="in time"):
            await get(pool)
        assert 0.25 < time.monotonic() - started < 0.8
        release.set()
        assert await first == (200, b"ok")
        await pool.close()
    assert server.connections == 1


async def test_many_requests_at_once_never_open_more_than_the_limit() -> None:
    async with running(answering_after(0.01)) as server:
        pool = pool_for(server, max_connections=3)
        results = await asyncio.gather(*(get(pool, b"/%d" % i) for i in range(40)))
        await pool.close()
    assert results == [(200, b"ok")] * 40
    assert server.most_open <= 3
    assert len(server.heads) == 40


async def test_requests_arriving_while_others_connect_never_open_more_than_the_limit() -> None:
    async with running(answering_after(0.02)) as server:
        pool = pool_for(server, max_connections=2)
        tasks = []
        for i in range(30):  # one every millisecond: some arrive while others connect
            tasks.append(asyncio.create_task(get(pool, b"/%d" % i)))
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*tasks)
        await pool.close()
    assert results == [(200, b"ok")] * 30
    assert server.most_open <= 2
    assert server.connections <= 2


async def test_a_large_body_streams_with_bounded_buffering() -> None:
    size = 8 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        block = b"x" * 65536
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        await reader.read()  # keep the connection until the client closes it

    async with running(handler) as server:
        pool = pool_for(server)
        total = 0
        most_buffered = 0
        async with await pool.request("GET", b"/big", []) as response:
            async for chunk in response.chunks():
                total += len(chunk)
                most_buffered = max(most_buffered, response._connection._buffered)
                await asyncio.sleep(0.0005)  # a slow consumer
        assert total == size
        # Paused above the high-water mark: at most one more socket read arrives after it.
        assert most_buffered <= BUFFER_HIGH_WATER + 256 * 1024
        assert pool.open_connections == 1
        await pool.close()


async def test_a_body_left_unread_closes_the_connection() -> None:
    answer = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    async with running(keep_alive(answer)) as server:
        pool = pool_for(server)
        async with await pool.request("GET", b"/x", []) as response:
            assert response.status == 200  # body not read
        assert pool.open_connections == 0
        assert await get(pool) == (200, b"hello")
        await pool.close()
    assert server.connections == 2


async def test_closing_the_pool_ends_requests_and_refuses_new_ones() -> None:
    async with running(silent) as server:
        pool = pool_for(server, max_connections=1)
        in_flight = asyncio.create_task(get(pool))
        waiting = asyncio.create_task(get(pool))
        await asyncio.sleep(0.1)
        await pool.close()
        with pytest.raises(ConnectionBroken):
            await in_flight
        with pytest.raises(PoolClosed):
            await waiting
        with pytest.raises(PoolClosed):
            await get(pool)


def test_only_http_urls_with_a_host_are_accepted() -> None:
    for url in ("ftp://host", "http://", "host:80"):
        with pytest.raises(ValueError, match="http:// or https://"):
            pool_at(
                url,
                max_connections=1,
                connect_timeout=1,
                pool_timeout=1,
                read_timeout=1,
                idle_seconds=1,
            )


@pytest.mark.parametrize(
    ("url", "port", "host"),
    [
        ("http://example.test", 80, b"example.test"),
        ("http://example.test:80", 80, b"example.test"),
        ("http://example.test:8080", 8080, b"example.test:8080"),
        ("http://example.test:443", 443, b"example.test:443"),
        ("https://example.test", 443, b"example.test"),
        ("https://example.test:443", 443, b"example.test"),
        ("https://example.test:80", 80, b"example.test:80"),
        ("https://example.test:8443", 8443, b"example.test:8443"),
        ("http://[::1]:81", 81, b"[::1]:81"),
    ],
)
async def test_the_port_and_host_header_follow_the_url(url: str, port: int, host: bytes) -> None:
    pool = pool_at(
        url, max_connections=1, connect_timeout=1, pool_timeout=1, read_timeout=1, idle_seconds=1
    )
    assert pool._port == port
    # TLS exactly for https:// (verified against the system's CAs unless given a context).
    assert isinstance(pool._ssl, ssl.SSLContext) is url.startswith("https://")
    head, chunked = pool._head("GET", b"/", [], None)
    assert head == b"GET / HTTP/1.1\r\nhost: " + host + b"\r\n\r\n"
    assert chunked is False


@pytest.mark.parametrize(
    ("method", "length"),
    [
        ("POST", b"content-length: 0\r\n"),
        ("PUT", b"content-length: 0\r\n"),
        ("PATCH", b"content-length: 0\r\n"),
        ("GET", b""),
        ("DELETE", b""),
        ("HEAD", b""),
        ("OPTIONS", b""),
    ],
)
async def test_a_method_that_carries_a_body_says_so_even_when_empty(
    method: str, length: bytes
) -> None:
    pool = pool_at(
        "http://example.test",
        max_connections=1,
        connect_timeout=1,
        pool_timeout=1,
        read_timeout=1,
        idle_seconds=1,
    )
    head, _ = pool._head(method, b"/x", [], None)
    assert head == method.encode() + b" /x HTTP/1.1\r\nhost: example.test\r\n" + length + b"\r\n"


@pytest.mark.parametrize(("extra", "refused"), [(0, False), (1, True)])
async def test_the_response_head_limit_is_64_kib_exactly(extra: int, refused: bool) -> None:
    # Each header counts its name, its value and 4 bytes (": " and CRLF): one header of
    # 65,536 bytes in all is allowed, one byte more is not. (No other header: the body
    # ends with the connection.)
    value = b"v" * (64 * 1024 - len(b"x-big") - 4 + extra)
    answer = b"HTTP/1.1 200 OK\r\nx-big: " + value + b"\r\n\r\n"

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        await read_head(reader, servers[-1])
        writer.write(answer)
        await writer.drain()

    async with running(handler) as server:
        pool = pool_for(server)
        if refused:
            with pytest.raises(ConnectionBroken, match="over the size limit"):
                await get(pool)
        else:
            async with await pool.request("GET", b"/x", []) as response:
                assert response.headers == [(b"x-big", value)]
                assert await response.read() == b""
        await pool.close()


async def test_a_100_continue_is_skipped_like_any_interim_answer() -> None:
    async with running(keep_alive(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)) as server:
        pool = pool_for(server)
        assert await get(pool) == (200, b"ok")
        await pool.close()


async def test_a_streamed_request_body_waits_for_a_slow_server() -> None:
    size = 16 * 1024 * 1024
    block = b"x" * 65536
    most_queued = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _: int) -> None:
        head = await read_head(reader, servers[-1])
        assert b"content-length: %d" % size in head
        left = size
        while left:
            left -= len(await reader.read(min(left, 65536)))
            await asyncio.sleep(0.0005)  # a slow reader
        writer.write(OK)
        await writer.drain()
        await reader.read()

    async with running(handler) as server:
        pool = pool_for(server)

        async def body() -> AsyncIterator[bytes]:
            nonlocal most_queued
            for _ in range(size // len(block)):
                [connection] = pool._busy
                most_queued = max(most_queued, connection._transport.get_write_buffer_size())
                yield block

        async with await pool.request(
            "PUT", b"/up", [(b"content-length", str(size).encode())], body()
        ) as response:
            assert (response.status, await response.read()) == (200, b"ok")
        await pool.close()
    # The writer waits while the transport's buffer is over its high-water mark (64 KiB by
    # default): the 16 MiB never pile up in memory.
    assert most_queued <= 1024 * 1024


async def test_a_waiter_cancelled_after_its_wake_up_passes_it_on() -> None:
    async with running(keep_alive()) as server:
        pool = pool_for(server, max_connections=1, pool_timeout=5.0)
        response = await pool.request("GET", b"/a", [])  # holds the only connection
        second = asyncio.create_task(get(pool, b"/b"))
        third = asyncio.create_task(get(pool, b"/c"))
        await asyncio.sleep(0.05)  # both wait for room
        assert await response.read() == b"ok"
        response.release()  # gives the connection back: wakes the second
        second.cancel()  # ...whose caller goes away before it runs
        started = time.monotonic()
        assert await third == (200, b"ok")
        assert time.monotonic() - started < 1.0, "the third slept until its deadline"
        with pytest.raises(asyncio.CancelledError):
            await second
        await pool.close()
