"""The echo's front layer: what the middlewares give an echoed request, in one layer."""

import asyncio
import json
import logging

import httpx
import pytest

from services.stub import echo
from services.stub.app import create_app
from services.stub.config import StubSecrets, StubSettings
from shared.assertion import ASSERTION_HEADER, AssertionSigner
from shared.keys import generate_private_key, load_private_key, public_key_text
from shared.metrics import REQUESTS

PRIVATE_KEY = generate_private_key()
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
# What each answer may differ in between the two ways: when it was made and a fresh id.
VOLATILE_FIELDS = {"time", "duration_ms"}


def _assertion(service: str = "trading", signer: AssertionSigner | None = None) -> str:
    signer = signer or AssertionSigner(PRIVATE_KEY)
    token, _ = signer.sign(
        username="alice", roles=["trading"], auth_method="password", service=service
    )
    return token


def _requests() -> list[tuple[str, str, dict[str, str], bytes]]:
    valid = {ASSERTION_HEADER: _assertion()}
    return [
        ("GET", "/orders/42?secret=in-the-query", {**valid, "X-Request-ID": "req-1"}, b""),
        ("POST", "/orders", {**valid, "traceparent": TRACEPARENT}, b'{"side":"buy"}' * 500),
        ("HEAD", "/orders/42", valid, b""),
        ("PATCH", "/", {**valid, "X-Request-ID": "not sane!"}, b""),
        ("GET", "/orders/42", {}, b""),  # no assertion
        ("DELETE", "/x", {ASSERTION_HEADER: _assertion("market")}, b""),
        (
            "GET",
            "/x",
            {ASSERTION_HEADER: _assertion(signer=AssertionSigner(generate_private_key()))},
            b"",
        ),
        ("TRACE", "/x", {ASSERTION_HEADER: "garbage"}, b""),
        # Not the routes themselves: the echo answers these both ways.
        ("GET", "/healthz/", valid, b""),
        ("GET", "/metricsx", {}, b""),
        # The routes (any method) and `/metrics` take the long way either way.
        ("GET", "/healthz", {}, b""),
        ("POST", "/healthz", {}, b""),
        ("GET", "/readyz", {"X-Request-ID": "ready-1"}, b""),
        ("GET", "/metrics", {"Authorization": "Bearer wrong"}, b""),
    ]


def _stub():
    return create_app(
        StubSettings(stub_service_name="trading"),
        StubSecrets(assertion_public_key=public_key_text(load_private_key(PRIVATE_KEY))),
    )


def _count() -> dict[tuple[str, ...], float]:
    return {
        tuple(sample.labels.values()): sample.value
        for metric in REQUESTS.collect()
        for sample in metric.samples
        if sample.name == "http_requests_total"
    }


def _lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [{k: v for k, v in line.items() if k not in VOLATILE_FIELDS} for line in lines]


async def _answers(app, capsys, *, front: bool, requests) -> tuple[list, list, dict]:
    saved = app.front
    app.front = saved if front else None
    before = _count()
    capsys.readouterr()
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://stub") as client:
            answers = []
            for method, url, headers, body in requests:
                response = await client.request(method, url, headers=headers, content=body)
                request_id = response.headers.get("x-request-id")
                answers.append(
                    (
                        response.status_code,
                        response.content,
                        sorted(
                            (name, value)
                            for name, value in response.headers.multi_items()
                            if name != "x-request-id"
                        ),
                        # A caller's sane id comes back; otherwise a fresh one does.
                        request_id if request_id in (None, "req-1", "ready-1") else "fresh",
                    )
                )
    finally:
        app.front = saved
    lines = _lines(capsys.readouterr().err)
    for line in lines:
        if line.get("request_id") not in (None, "req-1", "ready-1"):
            line["request_id"] = "fresh"
    after = _count()
    counted = {key: after[key] - before.get(key, 0.0) for key in after}
    return answers, lines, {key: n for key, n in counted.items() if n}


async def test_the_front_answers_exactly_as_the_middlewares_do(capsys):
    app = _stub()
    assert app.front is not None
    requests = _requests()
    async with app.router.lifespan_context(app):
        fast = await _answers(app, capsys, front=True, requests=requests)
        slow = await _answers(app, capsys, front=False, requests=requests)
        again = await _answers(app, capsys, front=True, requests=requests)
    assert fast == slow == again
    answers, lines, counted = fast
    assert [status for status, *_ in answers] == [
        *(200, 200, 200, 200),
        *(401, 401, 401, 401),
        *(200, 401),
        *(200, 401, 200, 401),
    ]
    echoed = json.loads(answers[0][1])
    assert (echoed["path"], echoed["user"], echoed["request_id"]) == (
        "/orders/42",
        "alice",
        "req-1",
    )
    assert all(request_id is not None for *_, request_id in answers)
    # One line per request but the quiet probes that succeeded, never the query string.
    assert len(lines) == len(requests) - 2
    assert "in-the-query" not in json.dumps(lines)
    assert lines[1]["trace_id"] == TRACEPARENT.split("-")[1]
    assert sum(counted.values()) == len(requests)


@pytest.mark.parametrize("front", [True, False])
async def test_a_bug_on_the_echo_is_a_json_500_without_an_id_logged_by_type_and_counted(
    capsys, caplog, monkeypatch, front
):
    app = _stub()
    async with app.router.lifespan_context(app):
        if not front:
            app.front = None

        def broken(assertion: str | None) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(app.state.runtime.verifier, "verify", broken)
        before = _count().get(("unmatched", "GET", "5xx"), 0.0)
        capsys.readouterr()
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://stub") as client:
            with caplog.at_level(logging.ERROR):
                response = await client.get("/x", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    # Starlette's error middleware answers outside the request log, so without its id.
    assert "x-request-id" not in response.headers
    assert _count()[("unmatched", "GET", "5xx")] == before + 1
    lines = _lines(capsys.readouterr().err)
    assert lines == [
        {
            "level": "error",
            "service": "trading",
            "request_id": "bug-1",
            "trace_id": None,
            "method": "GET",
            "route": None,
            "path": "/x",
            "status": 500,
            "user": None,
        },
        {
            "level": "error",
            "service": "trading",
            "logger": "shared.errors",
            "message": "unexpected RuntimeError on GET /x",
        },
    ]
    assert "secret detail" not in caplog.text


async def test_without_its_runtime_the_echo_answers_500_both_ways(capsys):
    app = _stub()  # no lifespan: no runtime
    fast = await _answers(app, capsys, front=True, requests=[("GET", "/x", {}, b"")])
    slow = await _answers(app, capsys, front=False, requests=[("GET", "/x", {}, b"")])
    assert fast == slow
    assert fast[0][0][0] == 500


async def test_with_tracing_on_the_echo_takes_the_long_way(monkeypatch):
    app = _stub()
    called = []

    async def front(scope, receive, send) -> None:
        called.append(scope["path"])

    monkeypatch.setattr(app, "front", front)
    monkeypatch.setattr(echo, "tracing_on", lambda: True)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stub") as client:
            response = await client.get("/x", headers={ASSERTION_HEADER: _assertion()})
    assert response.status_code == 200
    assert called == []


async def _cancelled(app, capsys) -> tuple[list, dict]:
    def cancelled(assertion: str | None) -> None:
        raise asyncio.CancelledError

    app.state.runtime.verifier.verify = cancelled
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"x-request-id", b"gone-1")],
        "client": ("127.0.0.1", 1),
        "server": ("stub", 80),
        "scheme": "http",
        "http_version": "1.1",
        "asgi": {"version": "3.0"},
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        raise AssertionError(f"nothing is sent: {message}")

    before = _count()
    capsys.readouterr()
    with pytest.raises(asyncio.CancelledError):
        await app(scope, receive, send)
    after = _count()
    return _lines(capsys.readouterr().err), {k: v - before.get(k, 0.0) for k, v in after.items()}


async def test_a_cancelled_echo_is_logged_and_counted_as_the_middlewares_do(capsys):
    app = _stub()
    async with app.router.lifespan_context(app):
        verify = app.state.runtime.verifier.verify
        fast = await _cancelled(app, capsys)
        app.state.runtime.verifier.verify = verify
        saved, app.front = app.front, None
        slow = await _cancelled(app, capsys)
        app.front = saved
    assert fast == slow
    lines, counted = fast
    assert [(line["request_id"], line["status"]) for line in lines] == [("gone-1", 500)]
    assert {k: v for k, v in counted.items() if v} == {("unmatched", "GET", "5xx"): 1.0}
