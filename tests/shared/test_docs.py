"""The API documentation pages load nothing from the internet."""

from __future__ import annotations

import enum
import importlib
import json
import re

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from shared.docs import add_offline_docs, inline_schema


def docs_app() -> FastAPI:
    app = FastAPI(title="Example", docs_url=None, redoc_url=None)
    add_offline_docs(app)
    return app


async def get(app: FastAPI, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://docs") as client:
        return await client.get(path)


async def test_the_page_references_only_relative_local_assets():
    app = docs_app()
    response = await get(app, "/docs")
    assets = {"docs-assets/swagger-ui-bundle.js", "docs-assets/swagger-ui.css"}
    assert response.status_code == 200
    html = response.text
    assert not re.search(r"https?://", html), "the page names an absolute URL"
    assert not re.search(r"""(?:src|href|url)\s*[=:]\s*['"]/""", html), "a root-relative URL"
    for asset in assets:
        assert f"'{asset}'" in html or f'"{asset}"' in html, asset
        served = await get(app, "/" + asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 10_000, asset
    assert "openapi.json" in html


async def test_assets_have_their_content_types():
    app = docs_app()
    script = await get(app, "/docs-assets/swagger-ui-bundle.js")
    style = await get(app, "/docs-assets/swagger-ui.css")
    assert "javascript" in script.headers["content-type"]
    assert style.headers["content-type"].startswith("text/css")


async def test_a_missing_asset_and_the_cdn_pages_are_404():
    app = docs_app()
    for path in ("/docs-assets/nothing.js", "/redoc"):
        assert (await get(app, path)).status_code == 404, path


def test_an_app_with_the_cdn_pages_left_on_is_refused():
    with pytest.raises(ValueError, match="docs_url=None"):
        add_offline_docs(FastAPI())


class Side(enum.Enum):
    BUY = "buy"
    SELL = "sell"


class Leg(BaseModel):
    side: Side


class Order(BaseModel):
    legs: list[Leg]
    side: Side


class Node(BaseModel):
    children: list[Node]


def test_inline_schema_writes_definitions_in_place():
    schema = inline_schema(Order)
    side = {"enum": ["buy", "sell"], "title": "Side", "type": "string"}
    assert "$defs" not in json.dumps(schema)
    assert schema["properties"]["side"] == side
    assert schema["properties"]["legs"]["items"]["properties"]["side"] == side


def test_inline_schema_refuses_a_recursive_model():
    with pytest.raises(ValueError, match="Node refers to itself"):
        inline_schema(Node)


@pytest.mark.parametrize("service", ["api_gateway", "portfolio"])
def test_no_service_document_uses_local_definitions(service: str):
    app = importlib.import_module(f"services.{service}.app").create_app()
    assert "$defs" not in json.dumps(app.openapi())
