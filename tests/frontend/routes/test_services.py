"""Signed-in pages and the session status: the session's own rules, gateway down or not."""

import time

import httpx
import pytest

from shared.roles import Service
from tests.frontend.conftest import running_frontend
from tests.frontend.stack import PASSWORD

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


async def revoke_at_gateway(stack, username: str) -> None:
    """Make the user's tokens stop working, the way an admin deactivation does."""
    admin = stack.user("admin", prefix="admin")
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        token = (
            await gateway.post("/auth/token", json={"username": admin, "password": PASSWORD})
        ).json()["access_token"]
        response = await gateway.post(
            f"/admin/users/{username}/deactivate", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200


@pytest.mark.e2e
@pytest.mark.postgres
class TestDashboardThroughTheGateway:
    async def test_the_dashboard_shows_user_roles_expiry_and_reachable_services(self, live, stack):
        username = stack.user("trading", "market")
        await live.login(username)
        page = await live.client.get("/dashboard")
        assert page.status_code == 200
        assert f"Welcome, {username}" in page.text
        assert 'id="token-countdown"' in page.text
        assert 'href="/services/trading"' in page.text
        assert 'href="/services/market"' in page.text
        assert 'href="/services/portfolio"' not in page.text
        assert 'href="/admin/users"' not in page.text

    async def test_an_admin_sees_every_service_and_the_admin_pages(self, live, stack):
        await live.login(stack.user("admin"))
        page = await live.client.get("/dashboard")
        for service in Service:
            assert f'href="/services/{service}"' in page.text
        assert 'href="/admin/users"' in page.text
        assert 'href="/admin/api-keys"' in page.text
        assert "since the gateway started" not in page.text

    async def test_the_page_script_is_served_from_self_with_the_deadlines(self, live, stack):
        await live.login(stack.user("trading"))
        page = await live.client.get("/dashboard")
        session = await live.session()
        assert '<script src="/static/session.js" defer></script>' in page.text
        assert f'data-token-expires-at="{session.token_expires_at}"' in page.text
        assert "<script>" not in page.text
        assert " style=" not in page.text
        assert " onclick=" not in page.text


@pytest.mark.e2e
@pytest.mark.postgres
class TestGatewayRejectsTheToken:
    async def test_a_page_load_then_clears_the_session_and_goes_to_login(self, live, stack):
        username = stack.user("trading")
        await live.login(username)
        session = await live.session()
        await revoke_at_gateway(stack, username)
        response = await live.client.get("/services/trading")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?expired=1"
        assert await live.store.get(session.id) is None
        assert live.cookie_name not in live.client.cookies

    async def test_a_background_request_then_answers_session_expired(self, live, stack):
        username = stack.user("trading")
        await live.login(username)
        session = await live.session()
        await revoke_at_gateway(stack, username)
        response = await live.client.get("/session/status", headers={"Accept": "application/json"})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "session_expired"
        assert await live.store.get(session.id) is None


@pytest.mark.e2e
@pytest.mark.postgres
class TestSessionStatus:
    async def test_the_status_tells_the_script_the_deadlines(self, live, stack, clock):
        username = stack.user("trading")
        await live.login(username)
        response = await live.client.get("/session/status")
        assert response.status_code == 200
        body = response.json()
        session = await live.session()
        assert body["username"] == username
        assert body["services"] == ["trading"]
        assert body["token_expires_at"] == session.token_expires_at
        assert body["idle_expires_at"] == clock.now + 1800


@pytest.mark.e2e
@pytest.mark.postgres
class TestServicePages:
    async def test_a_stub_page_shows_the_gateways_echo_of_the_caller(self, live, stack):
        username = stack.user("trading")
        await live.login(username)
        page = await live.client.get("/services/trading")
        assert page.status_code == 200
        assert "GET /api/trading/status" in page.text
        assert username in page.text
        assert "HTTP 200" in page.text

    async def test_the_portfolio_has_a_page_of_its_own_not_the_raw_answers(self, live, stack):
        await live.login(stack.user("portfolio"))
        page = await live.client.get("/services/portfolio")
        assert page.status_code == 200
        assert "Book a trade" in page.text
        assert "GET /api/portfolio" not in page.text

    async def test_a_service_outside_the_users_roles_shows_the_gateways_refusal(self, live, stack):
        await live.login(stack.user("trading"))
        page = await live.client.get("/services/market")
        assert page.status_code == 403
        assert "do not grant access" in page.text
        assert (await live.session()) is not None, "a 403 does not end the session"
