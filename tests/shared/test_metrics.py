"""shared.metrics: request metrics by route template, the scrape token, multiprocess mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from devstack.servers import ServerProcess
from shared.errors import exception_handlers
from shared.keys import generate_private_key, load_private_key, public_key_text
from shared.metrics import MetricsMiddleware
from tests.support.metrics import label_values, new_scrape_token, parse, scrape, value

TOKEN = new_scrape_token()


async def raw_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class RawMount:
    """A raw ASGI app in front of the router, as the gateway's proxy is."""

    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/raw/"):
            await raw_app(scope, receive, send)
            return
        await self.app(scope, receive, send)  # type: ignore[operator]


def build_app(token: SecretStr | None) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{name}")
    async def item(name: str) -> dict[str, str]:
        return {"name": name}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("bug")

    app.add_middleware(RawMount)
    app.add_middleware(MetricsMiddleware, mounts={"/raw/": "/raw/{path}"})
    for exception, handler in exception_handlers({}).items():
        app.add_exception_handler(exception, handler)
    app.state.runtime = SimpleNamespace(metrics_token=token)
    return app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(build_app(TOKEN), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
        yield http


def requests(samples, route: str, method: str = "GET", status: str = "2xx") -> float:
    return value(samples, "http_requests_total", route=route, method=method, status=status)


class TestRequestMetrics:
    async def test_requests_are_counted_and_timed_by_route_template(self, client):
        before = await scrape(client, TOKEN)
        for name in ("alice", "bob", "carol"):
            assert (await client.get(f"/items/{name}")).status_code == 200
        after = await scrape(client, TOKEN)
        assert requests(after, "/items/{name}") - requests(before, "/items/{name}") == 3
        count = "http_request_duration_seconds_count"
        labels = {"route": "/items/{name}", "method": "GET", "status": "2xx"}
        assert value(after, count, **labels) - value(before, count, **labels) == 3
        seen = label_values(after)
        assert not {"alice", "bob", "/items/alice"} & seen, "a raw path or value became a label"

    async def test_an_unknown_path_is_counted_as_unmatched_not_by_its_path(self, client):
        before = await scrape(client, TOKEN)
        assert (await client.get("/no/such/path/42")).status_code == 404
        after = await scrape(client, TOKEN)
        assert (
            requests(after, "unmatched", status="4xx") - requests(before, "unmatched", status="4xx")
            == 1
        )
        assert "/no/such/path/42" not in label_values(after)

    async def test_a_made_up_method_is_counted_as_other(self, client):
        before = await scrape(client, TOKEN)
        await client.request("BREW", "/items/x")
        after = await scrape(client, TOKEN)
        delta = requests(after, "/items/{name}", "other", "4xx") - requests(
            before, "/items/{name}", "other", "4xx"
        )
        assert delta == 1
        assert "BREW" not in label_values(after)

    async def test_a_raw_mount_is_counted_by_its_template(self, client):
        before = await scrape(client, TOKEN)
        assert (await client.get("/raw/anything/at/all")).status_code == 204
        after = await scrape(client, TOKEN)
        assert requests(after, "/raw/{path}") - requests(before, "/raw/{path}") == 1

    async def test_a_failing_handler_is_counted_as_5xx(self, client):
        before = await scrape(client, TOKEN)
        assert (await client.get("/boom")).status_code == 500
        after = await scrape(client, TOKEN)
        assert requests(after, "/boom", status="5xx") - requests(before, "/boom", status="5xx") == 1


class TestScrapeToken:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Bearer wrong-token-of-the-same-kind-wrong-token-of-the-same"},
            {"Authorization": f"Basic {TOKEN.get_secret_value()}"},
            {"Authorization": f"Bearer {TOKEN.get_secret_value()}x"},
            {"Authorization": "Bearer"},
        ],
        ids=["none", "wrong", "basic-scheme", "longer", "empty"],
    )
    async def test_metrics_are_404_like_any_unknown_path_without_the_token(self, client, headers):
        unknown = await client.get("/no-such-page")
        response = await client.get("/metrics", headers=headers)
        assert response.status_code == 404
        assert response.json() == unknown.json()
        assert "http_requests" not in response.text

    async def test_only_get_serves_metrics(self, client):
        headers = {"Authorization": f"Bearer {TOKEN.get_secret_value()}"}
        assert (await client.post("/metrics", headers=headers)).status_code in (404, 405)

    async def test_without_a_configured_token_nobody_gets_metrics(self):
        transport = httpx.ASGITransport(build_app(None))
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            assert (
                await http.get("/metrics", headers={"Authorization": "Bearer "})
            ).status_code == 404
            assert (
                await http.get("/metrics", headers={"Authorization": "Bearer None"})
            ).status_code == 404


@pytest.mark.e2e
def test_two_uvicorn_workers_count_together(tmp_path: Path):
    """With PROMETHEUS_MULTIPROC_DIR, a scrape of either worker reports every worker's
    requests: each worker counted some, and the scrape is their sum."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    token = new_scrape_token()
    key = generate_private_key()
    env = {
        "SECRETS_PROVIDER": "env",
        "STUB_SERVICE_NAME": "market",
        "GATEWAY_ASSERTION_PUBLIC_KEY": public_key_text(load_private_key(key)),
        "METRICS_SCRAPE_TOKEN": token.get_secret_value(),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
    }
    total = 120
    with ServerProcess(
        "services.stub.app:app",
        env=env,
        log_path=tmp_path / "stub.log",
        extra_args=("--workers", "2"),
    ) as server:
        before = _healthz_count(_scrape(server.url, token))

        async def hit() -> None:
            limits = httpx.Limits(max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=server.url, limits=limits) as http:
                semaphore = asyncio.Semaphore(16)

                async def one() -> None:
                    async with semaphore:
                        assert (await http.get("/healthz")).status_code == 200

                await asyncio.gather(*(one() for _ in range(total)))

        asyncio.run(hit())
        # The health checks of start-up counted too (`before`); every scrape, whichever
        # worker answers it, sees the same sum.
        for _ in range(6):
            assert _healthz_count(_scrape(server.url, token)) - before == total
        per_worker = []
        for file in sorted(multiproc.glob("counter_*.db")):
            merged = MultiProcessCollector.merge([str(file)], accumulate=True)
            per_worker.append(_healthz_count(_samples_of(merged)))
        assert len(per_worker) == 2, "one counter file per worker"
        assert all(count > 0 for count in per_worker), f"one worker did all: {per_worker}"
        assert sum(per_worker) - before == total


def _scrape(url: str, token: SecretStr):
    response = httpx.get(
        f"{url}/metrics", headers={"Authorization": f"Bearer {token.get_secret_value()}"}
    )
    assert response.status_code == 200
    return parse(response.text)


def _samples_of(families):
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def _healthz_count(samples) -> float:
    return value(samples, "http_requests_total", route="/healthz", method="GET", status="2xx")
