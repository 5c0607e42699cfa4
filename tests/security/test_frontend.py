"""The browser side: every form needs its session's CSRF token, logout is POST only, and a
login never keeps a session id the browser had before (no fixation)."""

from tests.frontend.conftest import running_frontend
from tests.security.conftest import PASSWORD

# The admin actions behind `/admin/users/{username}/{action}`, written out.
USER_ACTIONS = ("reset-password", "rotate-api-key", "reset-mfa", "reactivate", "delete")


def form_routes(app) -> list[str]:
    # Read from the app's own route table (its OpenAPI view), so a new form is covered.
    paths = [
        path.replace("{username}", "{victim}").replace("{factor_id}", "1")
        for path, methods in app.openapi()["paths"].items()
        if "post" in methods
    ]
    return [
        path.replace("{action}", action) if "{action}" in path else path
        for path in paths
        for action in (USER_ACTIONS if "{action}" in path else ("",))
    ]


async def test_every_form_refuses_a_post_without_the_sessions_csrf_token(stack):
    admin, _ = stack.user("admin")
    victim, _ = stack.user("trading")
    async with running_frontend(gateway_url=stack.gateway_url) as browser:
        other_token = await browser.csrf()  # belongs to the anonymous session, not the next
        assert (await browser.login(admin, PASSWORD)).status_code == 303
        routes = form_routes(browser.app)
        assert {"/login", "/logout", "/password/rotate"} <= set(routes)
        assert any(path.startswith("/admin/") for path in routes)
        fields = {
            "username": victim,
            "password": PASSWORD,
            "current_password": PASSWORD,
            "new_password": "a brand new long password 42",
            "new_password_confirm": "a brand new long password 42",
            "roles": "admin",
            "confirm": "yes",
        }
        for path in routes:
            url = path.format(victim=victim)
            for token in (None, "", other_token):
                session = await browser.session()
                if session is None or not session.is_authenticated:
                    # A refused /login form starts a fresh anonymous session: sign in again.
                    assert (await browser.login(admin, PASSWORD)).status_code == 303
                data = dict(fields) if token is None else {**fields, "csrf_token": token}
                response = await browser.client.post(url, data=data)
                assert response.status_code == 403, (url, token, response.status_code)
                if path != "/login":
                    after = await browser.session()
                    assert after is not None
                    assert after.is_authenticated, f"{url} without CSRF token ended the session"
    user = stack.identity.get_user(victim)
    assert user.is_active
    assert user.roles == ["trading"]
    assert stack.identity.authenticate(victim, PASSWORD).username == victim


async def test_logout_by_get_does_nothing(stack):
    name, _ = stack.user("trading")
    async with running_frontend(gateway_url=stack.gateway_url) as browser:
        await browser.login(name, PASSWORD)
        response = await browser.client.get("/logout")
        assert response.status_code == 405
        session = await browser.session()
        assert session is not None
        assert session.is_authenticated


async def test_a_session_id_planted_before_login_is_worthless_after_it(stack):
    name, _ = stack.user("trading")
    async with running_frontend(gateway_url=stack.gateway_url) as browser:
        await browser.csrf()
        planted = browser.client.cookies.get(browser.cookie_name)
        assert planted
        assert (await browser.login(name, PASSWORD)).status_code == 303
        assert browser.client.cookies.get(browser.cookie_name) != planted
        # The attacker, holding the planted cookie, is not signed in.
        browser.client.cookies.clear()
        browser.set_cookie(planted)
        dashboard = await browser.client.get("/dashboard")
        assert dashboard.status_code == 303
        assert dashboard.headers["location"].startswith("/login")
