"""The gateway's API docs render in Chromium with every non-loopback request cut off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Route, async_playwright, expect

from devstack import REPO_ROOT
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from tests.support.stack import service_urls, stack_env, start_portfolio_and_stub

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
WAIT_MS = 30_000


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root: Path = tmp_path_factory.mktemp("docs")
    env = stack_env(f"sqlite+aiosqlite:///{root / 'portfolio.db'}")
    with ExitStack() as stack:
        portfolio, stub = start_portfolio_and_stub(stack, env, root)
        gateway = stack.enter_context(
            ServerProcess(
                GATEWAY_APP,
                env={**env, **service_urls(portfolio.url, stub.url)},
                log_path=root / "gateway.log",
            )
        )
        yield gateway.url


async def test_the_docs_render_offline_with_the_portfolio_api(gateway_url: str):
    refused: list[str] = []

    async def offline(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort("internetdisconnected")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1366, "height": 900})
            await page.route("**/*", offline)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(gateway_url + "/docs")
            await expect(page.get_by_text("/api/portfolio/trades").first).to_be_visible(
                timeout=WAIT_MS
            )
            await expect(page.get_by_text("/auth/token").first).to_be_visible(timeout=WAIT_MS)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / "gateway-docs.png")
        finally:
            await browser.close()
    assert not errors
    assert not refused, refused
