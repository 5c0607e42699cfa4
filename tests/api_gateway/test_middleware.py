"""The `/api/` front door: what the middlewares give a proxied request, in one layer."""

import json
import logging

import httpx
import pytest

from services.api_gateway.app import create_app
from services.api_gateway.middleware import PROXY_ROUTE
from shared.metrics import REQUESTS

# What each answer may differ in between the two ways: when it was made and its id.
VOLATILE_HEADERS = {"date", "x-request-id"}
VOLATILE_FIELDS = {"time", "duration_ms", "request_id"}
REQUESTS_SENT = [
    ("GET", "/api/trading/orders/1", {}),  # no credentials
    ("GET", "/api/trading/orders/1", {"Authorization": "Bearer not-a-token"}),
    ("DELETE", "/api/nowhere/x", {"Authorization": "Basic YTpi"}),
    ("GET", "/api/trading/orders?access_token=abc", {}),
    ("TRACE", "/api/trading/orders/1", {}),
    ("POST", "/api/trading/orders", {"Content-Length": "nope"}),
]


def _count(status_class: str) -> float:
    methods = ("GET", "POST", "DELETE", "other")  # TRACE is counted as "other"
    return sum(REQUESTS.labels(PROXY_ROUTE, m, status_class)._value.get() for m in methods)


async def _answers(app, *, front: bool) -> list:
    saved = app.front
    app.front = saved if front else None
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            answers = []
            for method, url, headers in REQUESTS_SENT:
                response = await client.request(method, url, headers=headers)
                answers.append(
                    (
                        response.status_code,
                        response.content,
                        sorted(
                            (name, value)
                            for name, value in response.headers.multi_items()
                            if name not in VOLATILE_HEADERS
                        ),
                        "x-request-id" in response.headers,
                    )
                )
        app.state.runtime.access_log.flush()
    finally:
        app.front = saved
    return answers


async def test_the_front_answers_exactly_as_the_middlewares_do(make_settings, keys, access_log):
    app = create_app(make_settings(), keys.secrets())
    assert app.front is not None
    async with app.router.lifespan_context(app):
        before = _count("4xx")
        fast = await _answers(app, front=True)
        slow = await _answers(app, front=False)
    assert fast == slow
    assert all(has_id for *_, has_id in fast)
    assert [status for status, *_ in fast] == [401, 401, 401, 400, 405, 401]
    # Each request counted once either way, under the route template.
    assert _count("4xx") - before == 2 * len(REQUESTS_SENT)
    lines = [json.loads(line) for line in access_log.read_text().splitlines()]
    proxied = [line for line in lines if line["route"] == PROXY_ROUTE]
    assert len(proxied) == 2 * len(REQUESTS_SENT)
    half = len(REQUESTS_SENT)
    for one, other in zip(proxied[:half], proxied[half:], strict=True):
        assert {k: v for k, v in one.items() if k not in VOLATILE_FIELDS} == {
            k: v for k, v in other.items() if k not in VOLATILE_FIELDS
        }
    assert "abc" not in access_log.read_text()


@pytest.mark.parametrize("front", [True, False])
async def test_a_bug_on_the_proxy_path_is_a_json_500_logged_by_type_counted_and_in_the_access_log(
    make_settings, keys, access_log, caplog, monkeypatch, front
):
    app = create_app(make_settings(), keys.secrets())
    async with app.router.lifespan_context(app):
        if not front:
            app.front = None

        async def broken(authorization: str | None, api_key: str | None) -> None:
            raise RuntimeError("secret detail")

        monkeypatch.setattr(app.state.runtime.authenticator, "authenticate", broken)
        before = _count("5xx")
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            with caplog.at_level(logging.ERROR):
                response = await client.get("/api/trading/x", headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "RuntimeError" in caplog.text
    assert "secret detail" not in caplog.text
    assert _count("5xx") == before + 1
    line = json.loads(access_log.read_text().splitlines()[-1])
    assert (line["request_id"], line["status"], line["route"]) == ("bug-1", 500, PROXY_ROUTE)
