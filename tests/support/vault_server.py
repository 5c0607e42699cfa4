"""A TEST DOUBLE of HashiCorp Vault's KV v2 HTTP API — not Vault, for tests only.

It speaks the part of the real HTTP API that hvac uses for a KV version 2 engine, so the
secrets layer's Vault store is tested through hvac, requests and a real socket:

- `GET /v1/auth/token/lookup-self`
- `GET`, `POST`/`PUT` (with `options.cas`), `PATCH` (JSON merge patch) `/v1/<mount>/data/<path>`
- `GET /v1/<mount>/metadata/<path>`

Every request needs `X-Vault-Token` equal to the configured token (else 403 "permission
denied"); an unknown path answers 404 with `{"errors": []}` as Vault does. `delay` slows
every answer (for `VAULT_TIMEOUT` tests) and `tls=trustme.CA()` serves HTTPS with a
certificate of that CA (for `VAULT_VERIFY` tests). It runs uvicorn in a thread on a free
127.0.0.1 port; tests read and seed its state directly.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.ports import free_port


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class _Version:
    data: dict[str, Any]
    created_time: str = field(default_factory=_now)
    deletion_time: str = ""


class VaultTestDouble:
    """An in-memory KV v2 engine behind a real HTTP server (see the module docstring)."""

    def __init__(
        self,
        *,
        token: str = "test-root-token",
        mounts: tuple[str, ...] = ("secret",),
        tls: trustme.CA | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.token = token
        self.mounts = set(mounts)
        self.delay = 0.0
        # Called with (mount, path) just before a write is applied: lets a test play a
        # concurrent writer that sneaks in between the client's read and its write.
        self.before_write: Callable[[str, str], None] | None = None
        # `<mount>/<path>` the token may not touch (403), while lookup-self still works.
        self.forbidden_paths: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self._secrets: dict[tuple[str, str], list[_Version]] = {}
        self._lock = threading.Lock()
        self._tls = tls
        self._workdir = workdir
        self.port = free_port()
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # State, for tests.

    def put(self, secret_path: str, data: dict[str, Any]) -> int:
        """Write a new version at `<mount>/<path>`; return its number."""
        mount, _, path = secret_path.partition("/")
        with self._lock:
            return self._write(mount, path, dict(data))

    def read(self, secret_path: str) -> dict[str, Any] | None:
        """Return the latest data at `<mount>/<path>`, None when absent."""
        mount, _, path = secret_path.partition("/")
        with self._lock:
            versions = self._secrets.get((mount, path))
            return dict(versions[-1].data) if versions else None

    def version(self, secret_path: str) -> int:
        """Return the current version number (0 when absent)."""
        mount, _, path = secret_path.partition("/")
        with self._lock:
            return len(self._secrets.get((mount, path), []))

    def delete_latest(self, secret_path: str) -> None:
        """Soft-delete the latest version, as `vault kv delete` does."""
        mount, _, path = secret_path.partition("/")
        with self._lock:
            self._secrets[(mount, path)][-1].deletion_time = _now()

    def _write(self, mount: str, path: str, data: dict[str, Any]) -> int:
        versions = self._secrets.setdefault((mount, path), [])
        versions.append(_Version(data))
        return len(versions)

    # HTTP.

    def app(self) -> Starlette:
        """Build the ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/auth/token/lookup-self", self._lookup_self, methods=["GET"]),
                Route(
                    "/v1/{mount}/data/{path:path}",
                    self._data,
                    methods=["GET", "POST", "PUT", "PATCH"],
                ),
                Route("/v1/{mount}/metadata/{path:path}", self._metadata, methods=["GET"]),
            ]
        )

    async def _guard(self, request: Request) -> Response | None:
        self.requests.append((request.method, request.url.path))
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.headers.get("x-vault-token") != self.token:
            return _errors(403, "permission denied")
        mount = request.path_params.get("mount")
        if mount is None:
            return None
        path = request.path_params["path"]
        if f"{mount}/{path}" in self.forbidden_paths:
            return _errors(403, "permission denied")
        if mount not in self.mounts:
            return _errors(404, f'no handler for route "{mount}/{path}"')
        return None

    async def _lookup_self(self, request: Request) -> Response:
        if (denied := await self._guard(request)) is not None:
            return denied
        return _envelope(
            {
                "accessor": "test-accessor",
                "display_name": "token",
                "policies": ["root"],
                "ttl": 0,
                "type": "service",
            }
        )

    async def _data(self, request: Request) -> Response:
        if (denied := await self._guard(request)) is not None:
            return denied
        mount, path = request.path_params["mount"], request.path_params["path"]
        if request.method == "GET":
            with self._lock:
                versions = self._secrets.get((mount, path))
                if not versions:
                    return _errors(404)
                wanted = int(request.query_params.get("version") or len(versions))
                if not 1 <= wanted <= len(versions):
                    return _errors(404)
                chosen = versions[wanted - 1]
                if chosen.deletion_time:
                    # Vault answers a deleted version with 404 and its metadata.
                    body = {"data": None, "metadata": _version_metadata(chosen, wanted)}
                    return JSONResponse({"errors": [], "data": body}, status_code=404)
                return _envelope(
                    {"data": dict(chosen.data), "metadata": _version_metadata(chosen, wanted)}
                )
        body = await request.json()
        payload = body.get("data") if isinstance(body, dict) else None
        if not isinstance(payload, dict):
            return _errors(400, "no data provided")
        cas = (body.get("options") or {}).get("cas")
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(mount, path)
        with self._lock:
            versions = self._secrets.get((mount, path), [])
            current = len(versions)
            if cas is not None and int(cas) != current:
                return _errors(400, "check-and-set parameter did not match the current version")
            if request.method == "PATCH":
                if not versions:
                    return _errors(404)
                merged = dict(versions[-1].data)
                for key, value in payload.items():
                    if value is None:
                        merged.pop(key, None)
                    else:
                        merged[key] = value
                data = merged
            else:
                data = dict(payload)
            number = self._write(mount, path, data)
            return _envelope(_version_metadata(self._secrets[(mount, path)][-1], number))

    async def _metadata(self, request: Request) -> Response:
        if (denied := await self._guard(request)) is not None:
            return denied
        mount, path = request.path_params["mount"], request.path_params["path"]
        with self._lock:
            versions = self._secrets.get((mount, path))
            if not versions:
                return _errors(404)
            return _envelope(
                {
                    "cas_required": False,
                    "created_time": versions[0].created_time,
                    "current_version": len(versions),
                    "custom_metadata": None,
                    "delete_version_after": "0s",
                    "max_versions": 0,
                    "oldest_version": 1,
                    "updated_time": versions[-1].created_time,
                    "versions": {
                        str(number): {
                            "created_time": version.created_time,
                            "deletion_time": version.deletion_time,
                            "destroyed": False,
                        }
                        for number, version in enumerate(versions, start=1)
                    },
                }
            )

    # Process.

    def start(self, timeout: float = 10.0) -> VaultTestDouble:
        """Serve in a background thread until `stop()`."""
        options: dict[str, Any] = {}
        if self._tls is not None:
            if self._workdir is None:
                raise ValueError("a TLS test double needs a workdir for its key and certificate")
            cert = self._tls.issue_cert("127.0.0.1", "localhost")
            key_path = self._workdir / "vault-double.key"
            cert_path = self._workdir / "vault-double.pem"
            cert.private_key_pem.write_to_path(str(key_path))
            cert.cert_chain_pems[0].write_to_path(str(cert_path))
            options = {"ssl_keyfile": str(key_path), "ssl_certfile": str(cert_path)}
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
            **options,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="vault-double", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the Vault test double did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    def __enter__(self) -> VaultTestDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _version_metadata(version: _Version, number: int) -> dict[str, Any]:
    return {
        "created_time": version.created_time,
        "custom_metadata": None,
        "deletion_time": version.deletion_time,
        "destroyed": False,
        "version": number,
    }


def _envelope(data: dict[str, Any]) -> JSONResponse:
    return JSONResponse(
        {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
    )


def _errors(status: int, *messages: str) -> JSONResponse:
    return JSONResponse({"errors": list(messages)}, status_code=status)
