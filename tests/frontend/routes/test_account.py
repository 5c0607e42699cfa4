"""Every user's "My API key" page against the real gateway."""

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.frontend.conftest import running_frontend

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


class ApiKeySignIn(BaseHTTPRequestHandler):
    """A gateway that sees an API-key sign-in: the real one cannot, since every browser
    session holds a password sign-in's token. Answers as the gateway's OpenAPI says."""

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        key = {"username": "alice", "key_id": "0123456789abcdef", "created_at": None}
        self._answer(200, {**key, "first_used_at": None, "last_used_at": None})

    def do_POST(self) -> None:
        message = "sign in with your password to rotate your API key"
        self._answer(403, {"error": {"code": "forbidden", "message": message}})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_key_gateway() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), ApiKeySignIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


async def test_the_gateways_refusal_is_shown_on_the_page(api_key_gateway):
    async with running_frontend(gateway_url=api_key_gateway) as frontend:
        session = await frontend.signed_in(username="alice")
        page = await frontend.client.post(
            "/account/api-key", data={"csrf_token": session.csrf_token}
        )
    assert page.status_code == 403
    assert "Sign in with your password to rotate your API key" in page.text
    assert "<code>0123456789abcdef</code>" in page.text, "the page is shown again"
    assert "secret-value" not in page.text
