"""Trailing-slash redirects: relative, never towards the Host header or another host."""

import httpx
import pytest
from fastapi import FastAPI

from shared.redirects import use_relative_slash_redirects


def app() -> FastAPI:
    application = FastAPI()

    @application.get("/auth/me")
    async def me() -> dict[str, str]:
        return {"me": "yes"}

    @application.get("/folder/")
    async def folder() -> dict[str, str]:
        return {"folder": "yes"}

    @application.get("/{anything}/tail")
    async def tail(anything: str) -> dict[str, str]:
        return {"anything": anything}

    use_relative_slash_redirects(application.router)
    return application


async def get(path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        return await client.get(path, headers={"Host": "evil.example"})


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/auth/me/", "/auth/me"),
        ("/auth/me/?next=1", "/auth/me?next=1"),
        ("/folder", "/folder/"),
        ("/a%20b/tail/", "/a%20b/tail"),
    ],
)
async def test_a_slash_redirect_is_a_path_of_this_server(path, location):
    response = await get(path)
    assert response.status_code == 307
    assert response.headers["location"] == location


@pytest.mark.parametrize("path", ["/nothing/here/", "/auth/me/x", "/"])
async def test_no_redirect_where_no_route_matches(path):
    response = await get(path)
    assert response.status_code == 404
    assert "location" not in response.headers


async def raw_get(application: FastAPI, path: str) -> tuple[int, dict[bytes, bytes]]:
    """GET `path` exactly as a server would hand it over (an HTTP client would read a
    leading `//` as a host)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"evil.example")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    await application(scope, receive, send)
    start = sent[0]
    return int(start["status"]), dict(start["headers"])  # type: ignore[call-overload]


@pytest.mark.parametrize("path", ["//evil.example", "/\\evil.example"])
async def test_no_redirect_a_browser_would_read_as_another_host(path):
    application = FastAPI()

    @application.get("/{rest:path}/")
    async def directory(rest: str) -> dict[str, str]:
        return {"rest": rest}

    use_relative_slash_redirects(application.router)
    # The route matches `<path>/`: Starlette would answer `Location: //evil.example/`.
    assert (await raw_get(application, path + "/"))[0] == 200
    status, headers = await raw_get(application, path)
    assert status == 404
    assert b"location" not in headers


async def test_a_matching_path_is_served_without_a_redirect():
    response = await get("/auth/me")
    assert response.status_code == 200
