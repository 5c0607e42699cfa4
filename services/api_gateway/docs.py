"""The gateway's OpenAPI document: its own endpoints plus the portfolio's REST API as
clients reach it (`/api/portfolio/...`, with the gateway's credentials and error codes).

The portfolio's part is read from the running portfolio's `/openapi.json`, so the document
describes what is deployed; it is cached and refreshed at most once a minute by one request
at a time, and while the portfolio cannot be read the gateway serves its own part alone.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from pydantic.json_schema import models_json_schema

from shared.errors import ErrorBody

log = logging.getLogger(__name__)

PORTFOLIO_PREFIX = "/api/portfolio"
REFRESH_SECONDS = 60.0
RETRY_SECONDS = 10.0
FETCH_TIMEOUT_SECONDS = 3.0
MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}
# What the gateway itself may answer on any proxied call, before or instead of the portfolio.
_GATEWAY_RESPONSES = {
    "400": "`credentials_in_query`: a token or key was sent in the query string",
    "401": "`not_authenticated`, `invalid_token`, `token_expired` or `invalid_credentials`",
    "403": "`forbidden`: the caller's roles do not grant the portfolio service",
    "413": "`payload_too_large`",
    "502": "`upstream_unavailable`: the portfolio service answered badly or not at all",
    "503": "`upstream_unavailable`: the portfolio service is not ready",
    "504": "`upstream_timeout`: the portfolio service did not answer in time",
}
_ERROR_SCHEMA = "ErrorBody"


class DocumentUnavailable(Exception):
    """The portfolio's document could not be read or is not an OpenAPI document."""


def merge_portfolio(own: dict[str, Any], portfolio: dict[str, Any]) -> dict[str, Any]:
    """Return the gateway's document with the portfolio's paths under `/api/portfolio`."""
    document = copy.deepcopy(own)
    components = document.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    for name, schema in _error_schemas().items():
        schemas.setdefault(name, schema)
    theirs: dict[str, Any] = portfolio.get("components", {}).get("schemas", {})
    renames = {
        name: name if schemas.get(name, schema) == schema else f"Portfolio{name}"
        for name, schema in theirs.items()
    }
    for name, schema in theirs.items():
        schemas[renames[name]] = _rename_refs(schema, renames)
    components.setdefault("securitySchemes", {}).update(_SECURITY_SCHEMES)
    paths: dict[str, Any] = document.setdefault("paths", {})
    for path, item in portfolio.get("paths", {}).items():
        # The internal identity API is never reachable through the gateway's proxy.
        if not path.startswith("/") or path.lower().startswith("/internal"):
            continue
        item = _rename_refs(item, renames)
        for method, operation in item.items():
            if method in _METHODS and isinstance(operation, dict):
                _as_proxied(operation)
        paths[PORTFOLIO_PREFIX + path] = item
    # Swagger UI lists groups in the order of `tags`: the gateway's own first.
    named = [tag.get("name") for tag in document.get("tags", [])]
    for item in own.get("paths", {}).values():
        for operation in item.values():
            for tag in operation.get("tags", []) if isinstance(operation, dict) else []:
                if tag not in named:
                    named.append(tag)
                    document.setdefault("tags", []).append({"name": tag})
    document.setdefault("tags", []).append(
        {
            "name": "portfolio",
            "description": "The portfolio service's REST API, reached through the gateway's "
            "proxy by callers holding the `portfolio` role.",
        }
    )
    return document


def _error_schemas() -> dict[str, Any]:
    _, top = models_json_schema([(ErrorBody, "serialization")], ref_template=_ref("{model}"))
    schemas: dict[str, Any] = top["$defs"]
    return schemas


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _rename_refs(value: Any, renames: dict[str, str]) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith(_ref("")):
                name = item.removeprefix(_ref(""))
                out[key] = _ref(renames.get(name, name))
            else:
                out[key] = _rename_refs(item, renames)
        return out
    if isinstance(value, list):
        return [_rename_refs(item, renames) for item in value]
    return value


def _as_proxied(operation: dict[str, Any]) -> None:
    operation["tags"] = ["portfolio"]
    if "operationId" in operation:
        operation["operationId"] = f"portfolio_{operation['operationId']}"
    operation["security"] = [{"bearer": []}, {"apiKey": []}]
    responses = operation.setdefault("responses", {})
    for status, description in _GATEWAY_RESPONSES.items():
        responses.setdefault(
            status,
            {
                "description": description,
                "content": {"application/json": {"schema": {"$ref": _ref(_ERROR_SCHEMA)}}},
            },
        )


class ApiDocument:
    """The merged document, with the portfolio's part cached and refreshed on demand."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        portfolio_url: str,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = portfolio_url.rstrip("/") + "/openapi.json"
        self._clock = clock
        self._lock = asyncio.Lock()
        self._portfolio: dict[str, Any] | None = None
        self._merged: dict[str, Any] | None = None
        self._next_fetch = 0.0

    async def get(self, own: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Return the document: the gateway's own part, plus the portfolio's when known."""
        if self._clock() >= self._next_fetch and not self._lock.locked():
            async with self._lock:
                await self._refresh()
        if self._portfolio is None:
            return own()
        if self._merged is None:
            self._merged = merge_portfolio(own(), self._portfolio)
        return self._merged

    async def _refresh(self) -> None:
        try:
            portfolio = await self._fetch()
        except DocumentUnavailable as exc:
            self._next_fetch = self._clock() + RETRY_SECONDS
            log.warning("the portfolio's API document cannot be read: %s", exc)
            return
        self._next_fetch = self._clock() + REFRESH_SECONDS
        if portfolio != self._portfolio:
            self._portfolio, self._merged = portfolio, None

    async def _fetch(self) -> dict[str, Any]:
        try:
            async with self._session.get(
                self._url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_SECONDS)
            ) as response:
                if response.status != 200:
                    raise DocumentUnavailable(f"HTTP {response.status}")
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DocumentUnavailable(type(exc).__name__) from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise DocumentUnavailable(f"larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise DocumentUnavailable("not JSON") from None
        if not isinstance(document, dict) or not isinstance(document.get("paths"), dict):
            raise DocumentUnavailable("not an OpenAPI document")
        return document
