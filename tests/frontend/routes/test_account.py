"""Every user's "My API key" page against the real gateway."""

import re

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET = re.compile(r'<code id="secret-value">([^<]+)</code>')


class TestMyApiKey:
    async def test_without_a_key_the_page_offers_to_make_one(self, live, stack):
        await live.login(stack.user("market"))
        page = await live.client.get("/account/api-key")
        assert page.status_code == 200
        assert "You have no API key yet." in page.text
        assert "Make my API key" in page.text

    async def test_rotating_shows_the_key_once_then_only_its_id_and_use(self, live, stack):
        username = stack.user("trading")
        old = stack.identity.rotate_api_key(username, "o" * 40)
        await live.login(username)
        session = await live.session()
        page = await live.client.post("/account/api-key", data={"csrf_token": session.csrf_token})
        assert page.status_code == 200
        secret = SECRET.search(page.text)
        assert secret
        key = secret.group(1)
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            used = await gateway.get("/api/trading/orders", headers={"X-API-Key": key})
            assert used.status_code == 200
            stale = await gateway.get("/api/trading/orders", headers={"X-API-Key": old.api_key})
            assert stale.status_code == 401
        key_id = stack.identity.get_user(username).api_key_id
        shown = await live.client.get("/account/api-key")
        assert f"<code>{key_id}</code>" in shown.text
        assert key not in shown.text
        assert "never" not in shown.text.split("Last use")[1].split("</dd>")[0]

    async def test_a_rotation_needs_the_csrf_token(self, live, stack):
        username = stack.user("trading")
        await live.login(username)
        page = await live.client.post("/account/api-key", data={})
        assert page.status_code == 403
        assert stack.identity.get_user(username).api_key_id is None

    async def test_the_menu_links_the_page_for_every_user(self, live, stack):
        await live.login(stack.user("market"))
        page = await live.client.get("/dashboard")
        assert '<a href="/account/api-key">My API key</a>' in page.text
        assert '<a href="/admin/audit"' not in page.text, "the audit link is for admins"
