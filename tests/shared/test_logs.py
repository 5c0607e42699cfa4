"""The log format: one JSON line per request and per application log, request id inside."""

import json
import logging

import httpx
import pytest
from fastapi import FastAPI

from shared.logs import RequestLog, configure_logging, note_user, trace_id_from

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def _app() -> FastAPI:
    configure_logging("shop")
    app = FastAPI()

    @app.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        note_user("alice")
        logging.getLogger("services.shop").info("looking up an item")
        return {"item": item}

    @app.get("/poll")
    async def poll() -> dict[str, str]:
        return {"status": "idle"}

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("hunter2")

    app.add_middleware(RequestLog, quiet=frozenset({"/poll"}))
    return app


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _get(app: FastAPI, *paths: str, headers: dict[str, str] | None = None) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        for path in paths:
            await client.get(path, headers=headers)


async def test_a_request_writes_one_line_with_its_route_and_never_its_query(capsys):
    app = _app()
    capsys.readouterr()
    await _get(
        app,
        "/items/42?api_key=secret-in-query",
        headers={"X-Request-ID": "req-1", "traceparent": TRACEPARENT},
    )
    text = capsys.readouterr().err
    assert "secret-in-query" not in text
    log, request = _lines(text)
    assert log == {
        "time": log["time"],
        "level": "info",
        "service": "shop",
        "logger": "services.shop",
        "message": "looking up an item",
        "request_id": "req-1",
        "trace_id": TRACE_ID,
    }
    assert request == {
        "time": request["time"],
        "level": "info",
        "service": "shop",
        "request_id": "req-1",
        "trace_id": TRACE_ID,
        "method": "GET",
        "route": "/items/{item}",
        "path": "/items/42",
        "status": 200,
        "duration_ms": request["duration_ms"],
        "user": "alice",
    }
    assert str(request["time"]).endswith("Z")
    assert isinstance(request["duration_ms"], float)


async def test_a_quiet_route_is_not_logged_while_it_succeeds(capsys):
    app = _app()
    capsys.readouterr()
    await _get(app, "/poll", "/poll", "/poll")
    assert capsys.readouterr().err == ""


async def test_a_bug_logs_an_error_line_without_its_message_or_traceback(capsys):
    app = _app()
    capsys.readouterr()
    await _get(app, "/boom")
    text = capsys.readouterr().err
    assert "hunter2" not in text
    assert "Traceback" not in text
    request = _lines(text)[-1]
    assert (request["level"], request["status"], request["route"]) == ("error", 500, "/boom")
    assert len(str(request["request_id"])) == 32


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (TRACEPARENT.encode(), TRACE_ID),
        (b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01", None),
        (b"not a traceparent", None),
        (None, None),
    ],
)
def test_the_trace_id_comes_from_a_valid_traceparent_only(header, expected):
    assert trace_id_from(header) == expected
