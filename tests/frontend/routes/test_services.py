"""Signed-in pages and the session status: the session's own rules, gateway down or not."""

import time

import pytest

from tests.frontend.conftest import running_frontend

PAGES = ["/dashboard", "/services/portfolio", "/admin/users", "/admin/api-keys"]


class TestWithoutSession:
    @pytest.mark.parametrize("path", PAGES)
    async def test_a_page_sends_an_unknown_browser_to_login(self, frontend, path):
        response = await frontend.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == "/login"

    async def test_the_status_answers_401_json(self, frontend):
        response = await frontend.client.get("/session/status")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "not_authenticated"

    async def test_an_anonymous_session_is_not_signed_in(self, frontend):
        await frontend.csrf()
        response = await frontend.client.get("/dashboard")
        assert response.headers["location"] == "/login"


class TestIdleTimeout:
    @pytest.mark.parametrize("path", PAGES)
    async def test_a_page_after_the_idle_timeout_goes_to_login_saying_so(
        self, frontend, clock, path
    ):
        session = await frontend.signed_in()
        clock.advance(1800)
        response = await frontend.client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == "/login?expired=1"
        assert await frontend.store.get(session.id) is None
        assert frontend.cookie_name not in frontend.client.cookies

    async def test_the_status_after_the_idle_timeout_answers_session_expired(self, frontend, clock):
        await frontend.signed_in()
        clock.advance(1800)
        response = await frontend.client.get("/session/status")
        assert response.status_code == 401
        body = response.json()
        assert body["error"]["code"] == "session_expired"
        assert body["error"]["login_url"] == "/login?expired=1"

    async def test_a_page_load_is_activity(self, frontend, clock):
        session = await frontend.signed_in()
        clock.advance(1000)
        await frontend.client.get("/dashboard")  # gateway down: 502, but it counts
        clock.advance(1000)
        assert await frontend.store.get(session.id) is not None

    async def test_the_pages_own_polling_is_not_activity(self, frontend, clock):
        session = await frontend.signed_in()
        clock.advance(1000)
        await frontend.client.get("/session/status")
        clock.advance(1000)
        assert await frontend.store.get(session.id) is None

    async def test_the_absolute_lifetime_ends_an_active_session(self, clock):
        async with running_frontend(clock=clock, session_lifetime=3000) as frontend:
            session = await frontend.signed_in()
            for _ in range(2):
                clock.advance(1000)
                live = await frontend.client.get("/dashboard")
                assert live.status_code == 502, "alive (the gateway is down)"
            clock.advance(1000)
            response = await frontend.client.get("/dashboard")
            assert response.headers["location"] == "/login?expired=1"
            assert await frontend.store.get(session.id) is None


class TestTokenExpiry:
    async def test_a_page_after_the_token_expired_goes_to_login_saying_so(self, frontend):
        session = await frontend.signed_in(token_expires_at=time.time() - 1)
        response = await frontend.client.get("/dashboard")
        assert response.headers["location"] == "/login?expired=1"
        assert await frontend.store.get(session.id) is None

    async def test_the_status_after_the_token_expired_answers_session_expired(self, frontend):
        await frontend.signed_in(token_expires_at=time.time() - 1)
        response = await frontend.client.get("/session/status")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "session_expired"


class TestGatewayDown:
    async def test_a_page_says_the_gateway_is_unreachable_and_keeps_the_session(self, frontend):
        session = await frontend.signed_in()
        response = await frontend.client.get("/dashboard")
        assert response.status_code == 502
        assert "gateway is unreachable" in response.text
        assert await frontend.store.get(session.id) is not None

    async def test_the_status_answers_502_json(self, frontend):
        await frontend.signed_in()
        response = await frontend.client.get("/session/status")
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "upstream_unavailable"


async def test_an_unknown_service_is_404(frontend):
    await frontend.signed_in()
    response = await frontend.client.get("/services/casino")
    assert response.status_code == 404
    assert "no service named" in response.text


class TestAdminForms:
    async def test_deactivation_without_csrf_token_is_refused(self, frontend):
        await frontend.signed_in(roles=("admin",))
        response = await frontend.client.post("/admin/users/bob/deactivate")
        assert response.status_code == 403
        assert "CSRF" in response.text

    async def test_a_roles_change_with_a_wrong_csrf_token_is_refused(self, frontend):
        await frontend.signed_in(roles=("admin",))
        response = await frontend.client.post(
            "/admin/users/bob/roles",
            data={"roles": ["trading"], "confirm": "yes", "csrf_token": "wrong"},
        )
        assert response.status_code == 403
