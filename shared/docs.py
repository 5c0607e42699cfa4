"""API documentation served from the package: Swagger UI without a CDN.

FastAPI's own `/docs` and `/redoc` load their scripts from a CDN, so they are blank on a
host without internet access. `/docs` here loads Swagger UI from the fastapi-offline
package instead; ReDoc is left out (its page still fetches its logo from a CDN). Every URL in them is relative, so the pages also work below a prefix
(e.g. the portfolio's pages reached through the gateway at `/api/portfolio/docs`).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

ASSETS_PATH = "/docs-assets"
_ASSETS = str(files("fastapi_offline") / "static")


def add_offline_docs(app: FastAPI, *, openapi_path: str = "/openapi.json") -> None:
    """Serve `/docs` (Swagger UI) for the app's OpenAPI document from local assets.

    The app must be built with `docs_url=None, redoc_url=None`, so FastAPI's CDN pages are
    not registered as well.
    """
    if app.docs_url is not None or app.redoc_url is not None:
        raise ValueError("build the app with docs_url=None and redoc_url=None")
    document = openapi_path.lstrip("/")
    assets = ASSETS_PATH.lstrip("/")
    app.mount(ASSETS_PATH, StaticFiles(directory=_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=document,
            title=f"{app.title} - API docs",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
        )


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the model's JSON schema with its `$defs` written in place.

    For a request body documented by hand (`openapi_extra`): a `#/$defs/...` reference is
    valid JSON Schema, but not every OpenAPI reader resolves it (ReDoc refuses the document).
    """
    schema = model.model_json_schema()
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def resolve(value: Any, seen: frozenset[str]) -> Any:
        if isinstance(value, dict):
            reference = value.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                name = reference.removeprefix("#/$defs/")
                if name in seen:
                    raise ValueError(f"{model.__name__}: {name} refers to itself")
                return resolve(definitions[name], seen | {name})
            return {key: resolve(item, seen) for key, item in value.items()}
        if isinstance(value, list):
            return [resolve(item, seen) for item in value]
        return value

    resolved: dict[str, Any] = resolve(schema, frozenset())
    return resolved
