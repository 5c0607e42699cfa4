"""The body cap middleware, driven message by message."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse
from httpx import ASGITransport, AsyncClient
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from shared.errors import nested_too_deeply
from shared.limits import BodyLimit, PayloadTooLarge

CAP = 1024


class Peer:
    """The server side of one request: hands out body messages, records what is sent."""

    def __init__(self, chunks: list[bytes], headers: list[tuple[bytes, bytes]]) -> None:
        self.messages: list[Message] = [
            {"type": "http.request", "body": chunk, "more_body": n < len(chunks) - 1}
            for n, chunk in enumerate(chunks)
        ]
        self.scope: Scope = {"type": "http", "method": "POST", "path": "/", "headers": headers}
        self.reads = 0
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        self.reads += 1
        return self.messages.pop(0) if self.messages else {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    def json(self) -> dict[str, dict[str, str]]:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


async def read_all(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app without error handlers: read the whole body, answer its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def answer_unread(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse without reading the body, as a route checking credentials first does."""
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b"who are you"})


def length(value: int) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(value).encode())]


async def test_a_body_within_the_cap_is_read():
    peer = Peer([b"a" * 512, b"a" * 512], length(CAP))
    await BodyLimit(read_all, max_bytes=CAP)(peer.scope, peer.receive, peer.send)
    assert peer.status == 200
    assert peer.sent[1]["body"] == str(CAP).encode()


async def test_a_declared_length_over_the_cap_is_refused_before_any_read():
    peer = Peer([b"a" * (CAP + 1)], length(CAP + 1))
    await BodyLimit(read_all, max_bytes=CAP)(peer.scope, peer.receive, peer.send)
    assert peer.reads == 0
    assert peer.status == 413
    assert peer.json()["error"]["code"] == "payload_too_large"
    assert str(CAP) in peer.json()["error"]["message"]


async def test_a_streamed_body_is_refused_as_soon_as_the_count_passes_the_cap():
    peer = Peer([b"a" * 400] * 10, [(b"transfer-encoding", b"chunked")])
    await BodyLimit(read_all, max_bytes=CAP)(peer.scope, peer.receive, peer.send)
    assert peer.reads == 3  # 1200 bytes: the third chunk passed the cap
    assert peer.status == 413


async def test_an_app_answering_without_reading_keeps_its_answer():
    peer = Peer([b"a" * 10], length(10 * CAP))
    await BodyLimit(answer_unread, max_bytes=CAP)(peer.scope, peer.receive, peer.send)
    assert peer.reads == 0
    assert peer.status == 401


async def test_a_refusal_after_the_answer_started_is_not_hidden():
    async def stream_then_read(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await read_all(scope, receive, send)

    peer = Peer([b"a" * 400] * 10, [])
    with pytest.raises(PayloadTooLarge):
        await BodyLimit(stream_then_read, max_bytes=CAP)(peer.scope, peer.receive, peer.send)


def fastapi_app(max_bytes: int) -> FastAPI:
    app = FastAPI()

    @app.post("/items")
    async def items(item: dict[str, object] = Body()) -> dict[str, int]:  # noqa: B008
        return {"fields": len(item)}

    @app.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = "json_too_deep" if nested_too_deeply(exc) else str(exc.status_code)
        return JSONResponse({"code": code}, status_code=exc.status_code)

    app.add_exception_handler(HTTPException, handler)
    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    return app


def client_of(app: FastAPI) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app), base_url="http://test")


@pytest.fixture
async def client() -> AsyncIterator[AsyncClient]:
    async with client_of(fastapi_app(CAP)) as c:
        yield c


@pytest.mark.parametrize("path", ["/items", "/raw"])
async def test_a_route_reading_too_much_gets_the_413_from_its_handler(client, path):
    response = await client.post(path, json={"pad": "x" * CAP})
    assert response.status_code == 413
    assert response.json() == {"code": "413"}


async def test_a_route_reading_a_chunked_body_too_large_gets_413(client):
    async def body() -> AsyncIterator[bytes]:
        for _ in range(2):
            yield b"a" * 600

    response = await client.post("/raw", content=body())
    assert response.status_code == 413


async def test_json_nested_past_the_parser_is_told_apart():
    deep = b"[" * 5000 + b"]" * 5000
    async with client_of(fastapi_app(len(deep))) as client:
        response = await client.post(
            "/items", content=deep, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {"code": "json_too_deep"}
