"""The gateway's API document: its own endpoints plus the portfolio's REST API as clients
reach it through the proxy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.api_gateway.docs import ApiDocument, merge_portfolio

OWN: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "gateway", "version": "1"},
    "paths": {"/auth/token": {"post": {"responses": {"200": {"description": "ok"}}}}},
    "components": {"schemas": {"Health": {"type": "object", "title": "gateway health"}}},
}
PORTFOLIO: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "portfolio", "version": "1"},
    "paths": {
        "/trades": {
            "get": {
                "operationId": "list_trades",
                "tags": ["trading"],
                "responses": {
                    "200": {
                        "description": "ok",
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/TradePage"}
                            }
                        },
                    },
                    "401": {"description": "the portfolio's own 401"},
                },
            }
        },
        "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        "/internal/identity/users": {"get": {"responses": {"200": {"description": "no"}}}},
        "/INTERNAL/x": {"get": {"responses": {"200": {"description": "no"}}}},
    },
    "components": {
        "schemas": {
            "TradePage": {
                "type": "object",
                "properties": {"health": {"$ref": "#/components/schemas/Health"}},
            },
            "Health": {"type": "object", "title": "portfolio health"},
        }
    },
}


def own() -> dict[str, Any]:
    return OWN


def test_portfolio_paths_appear_under_the_proxy_prefix_and_internal_ones_never():
    merged = merge_portfolio(OWN, PORTFOLIO)
    assert sorted(merged["paths"]) == [
        "/api/portfolio/health",
        "/api/portfolio/trades",
        "/auth/token",
    ]


def test_proxied_operations_carry_the_gateways_credentials_and_error_answers():
    operation = merge_portfolio(OWN, PORTFOLIO)["paths"]["/api/portfolio/trades"]["get"]
    assert operation["security"] == [{"bearer": []}, {"apiKey": []}]
    assert operation["tags"] == ["portfolio"]
    assert operation["operationId"] == "portfolio_list_trades"
    assert sorted(operation["responses"]) == [
        "200",
        "400",
        "401",
        "403",
        "413",
        "502",
        "503",
        "504",
    ]
    # The portfolio's own description of a status is kept; the gateway only adds.
    assert operation["responses"]["401"] == {"description": "the portfolio's own 401"}
    assert operation["responses"]["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


def test_a_schema_name_both_documents_use_differently_is_renamed_with_its_references():
    merged = merge_portfolio(OWN, PORTFOLIO)
    schemas = merged["components"]["schemas"]
    assert schemas["Health"] == {"type": "object", "title": "gateway health"}
    assert schemas["PortfolioHealth"] == {"type": "object", "title": "portfolio health"}
    assert schemas["TradePage"]["properties"]["health"] == {
        "$ref": "#/components/schemas/PortfolioHealth"
    }
    assert "ErrorBody" in schemas
    assert merged["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }


def test_merging_leaves_both_inputs_untouched():
    before_own, before_portfolio = repr(OWN), repr(PORTFOLIO)
    merge_portfolio(OWN, PORTFOLIO)
    assert (repr(OWN), repr(PORTFOLIO)) == (before_own, before_portfolio)


class Portfolio:
    """A real HTTP server standing in for the portfolio's /openapi.json."""

    def __init__(self) -> None:
        self.requests = 0
        self.answer: Callable[[], web.Response] = lambda: web.json_response(PORTFOLIO)
        self.delay = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        await asyncio.sleep(self.delay)
        return self.answer()


@pytest.fixture
async def served() -> AsyncIterator[tuple[Portfolio, str]]:
    portfolio = Portfolio()
    app = web.Application()
    app.router.add_get("/openapi.json", portfolio.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield portfolio, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_requests_read_the_portfolio_once(served):
    portfolio, url = served
    portfolio.delay = 0.2
    async with aiohttp.ClientSession() as session:
        document = ApiDocument(session, url)
        results = await asyncio.gather(*(document.get(own) for _ in range(50)))
    assert portfolio.requests == 1
    assert any("/api/portfolio/trades" in result["paths"] for result in results)


async def test_the_portfolio_is_read_again_after_a_minute(served):
    portfolio, url = served
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        document = ApiDocument(session, url, clock=clock)
        await document.get(own)
        clock.now += 59
        await document.get(own)
        assert portfolio.requests == 1
        clock.now += 2
        portfolio.answer = lambda: web.json_response(
            {**PORTFOLIO, "paths": {"/positions": {"get": {"responses": {}}}}}
        )
        paths = (await document.get(own))["paths"]
    assert portfolio.requests == 2
    assert "/api/portfolio/positions" in paths
    assert "/api/portfolio/trades" not in paths


@pytest.mark.parametrize(
    "answer",
    [
        lambda: web.Response(status=503),
        lambda: web.Response(text="not json", content_type="application/json"),
        lambda: web.json_response(["a list"]),
        lambda: web.json_response({"openapi": "3.1.0"}),
        lambda: web.Response(body=b"[" * (3 * 1024 * 1024), content_type="application/json"),
    ],
    ids=["error-status", "not-json", "not-an-object", "no-paths", "oversized"],
)
async def test_an_unreadable_portfolio_document_leaves_the_gateways_own(served, answer):
    portfolio, url = served
    portfolio.answer = answer
    async with aiohttp.ClientSession() as session:
        assert await ApiDocument(session, url).get(own) is OWN


async def test_a_portfolio_that_is_down_leaves_the_gateways_own_and_is_retried(served):
    portfolio, url = served
    clock = Clock()
    async with aiohttp.ClientSession() as session:
        down = ApiDocument(session, "http://127.0.0.1:9", clock=clock)
        assert await down.get(own) is OWN
        document = ApiDocument(session, url, clock=clock)
        portfolio.answer = lambda: web.Response(status=500)
        assert await document.get(own) is OWN
        portfolio.answer = lambda: web.json_response(PORTFOLIO)
        clock.now += 5
        assert await document.get(own) is OWN  # not retried yet
        clock.now += 6
        assert "/api/portfolio/trades" in (await document.get(own))["paths"]
    assert portfolio.requests == 2


async def test_the_gateway_serves_the_real_portfolios_api(make_settings, keys, portfolio):
    from tests.api_gateway.conftest import running_gateway

    settings = make_settings(portfolio_service_url=portfolio.url)
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for path in ("/auth/token", "/admin/users", "/api/portfolio/trades"):
        assert path in paths, path
    assert not [path for path in paths if "internal" in path.lower()]
    assert "/openapi.json" not in paths
    assert "/docs" not in paths


def test_the_gateways_groups_come_before_the_portfolios():
    own_tagged = {
        **OWN,
        "paths": {
            "/auth/token": {"post": {"tags": ["auth"], "responses": {}}},
            "/healthz": {"get": {"tags": ["health"], "responses": {}}},
        },
    }
    tags = [tag["name"] for tag in merge_portfolio(own_tagged, PORTFOLIO)["tags"]]
    assert tags == ["auth", "health", "portfolio"]
