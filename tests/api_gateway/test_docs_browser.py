"""The gateway's and the portfolio's API docs render in Chromium with every non-loopback
request cut off."""

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
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The gateway's and the portfolio's own address, each serving its `/docs`."""
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
        yield {"gateway": gateway.url, "portfolio": portfolio.url}


# What each page must show once Swagger UI has run: the gateway documents the portfolio's
# API as clients reach it, the portfolio its own paths.
SHOWN = {
    "gateway": ("/api/portfolio/trades", "/auth/token"),
    "portfolio": ("/trades", "/summary"),
}


@pytest.mark.parametrize("service", sorted(SHOWN))
async def test_the_docs_render_offline(service_url: dict[str, str], service: str):
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
            await page.goto(service_url[service] + "/docs")
            for path in SHOWN[service]:
                shown = page.get_by_text(path, exact=True).first
                await expect(shown).to_be_visible(timeout=WAIT_MS)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=ARTIFACTS / f"{service}-docs.png")
        finally:
            await browser.close()
    assert not errors
    assert not refused, refused
