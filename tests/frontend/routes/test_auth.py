"""Login, rotation and logout rules that hold whatever the gateway says.

What needs the gateway's answers is in test_with_gateway.py against the real processes.
"""

import time

import asyncpg
import httpx
import pytest

from services.frontend.csrf import FormPassSigner
from tests.frontend.conftest import SESSION_SECRET, running_frontend
from tests.frontend.stack import PASSWORD


class TestLoginPage:
    async def test_the_login_form_token_is_bound_to_a_signed_pass_in_the_cookie(self, frontend):
        response = await frontend.client.get("/login")
        assert response.status_code == 200
        form_pass = frontend.form_pass()
        assert form_pass is not None
        assert form_pass.pending_username is None
        assert f'name="csrf_token" value="{form_pass.nonce}"' in response.text
        assert frontend.session_id() is None, "the cookie holds a pass, not a session"

    async def test_the_login_page_keeps_nothing_server_side(self, frontend):
        for _ in range(500):
            frontend.client.cookies.clear()
            assert (await frontend.client.get("/login")).status_code == 200
        await frontend.csrf("/password/rotate")
        assert len(frontend.store) == 0

    async def test_the_cookie_is_httponly_samesite_lax_and_short_lived(self, frontend):
        cookie = (await frontend.client.get("/login")).headers["set-cookie"]
        assert cookie.startswith("lct_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/" in cookie
        assert "Max-Age=1800" in cookie
        assert "Secure" not in cookie, "a local run over plain HTTP turns Secure off"

    async def test_the_cookie_is_secure_and_host_only_by_default(self):
        async with running_frontend(cookie_secure=True) as secure:
            cookie = (await secure.client.get("/login")).headers["set-cookie"]
        assert cookie.startswith("__Host-lct_session=")
        assert "Secure" in cookie
        assert "Domain" not in cookie

    async def test_reloading_keeps_the_same_token(self, frontend):
        first = await frontend.csrf()
        assert await frontend.csrf() == first
        assert frontend.form_pass().nonce == first

    async def test_the_expired_flag_tells_the_user_why(self, frontend):
        response = await frontend.client.get("/login?expired=1")
        assert "Your session expired" in response.text

    async def test_a_signed_in_browser_goes_to_its_dashboard(self, frontend):
        await frontend.signed_in()
        response = await frontend.client.get("/login")
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"

    @pytest.mark.parametrize("path", ["/login", "/dashboard"])
    async def test_a_cookie_with_non_ascii_characters_counts_as_none(self, frontend, path):
        cookie = f"{frontend.cookie_name}=abc.\u00e9\u00e9".encode("latin-1")
        response = await frontend.client.get(path, headers={"Cookie": cookie})
        assert response.status_code == (200 if path == "/login" else 303)

    async def test_a_forged_cookie_gets_a_fresh_form(self, frontend):
        frontend.set_cookie("made-up-id.made-up-signature")
        response = await frontend.client.get("/login")
        assert response.status_code == 200
        assert frontend.form_pass() is not None
        assert len(frontend.store) == 0


class TestLoginForm:
    async def test_a_login_without_csrf_token_is_refused(self, frontend):
        await frontend.csrf()
        response = await frontend.client.post("/login", data={"username": "a", "password": "b"})
        assert response.status_code == 403
        assert "form expired" in response.text

    async def test_a_login_with_another_forms_token_is_refused(self, frontend):
        other = await frontend.csrf()
        frontend.client.cookies.clear()
        mine = await frontend.csrf()
        assert other != mine
        response = await frontend.client.post(
            "/login", data={"username": "a", "password": "b", "csrf_token": other}
        )
        assert response.status_code == 403
        assert f'value="{mine}"' in response.text, "the re-shown form works"

    async def test_an_expired_pass_is_sent_to_a_fresh_form(self, frontend):
        an_hour_ago = FormPassSigner(
            SESSION_SECRET, lifetime=1800, clock=lambda: time.time() - 3600
        )
        issued = an_hour_ago.issue()
        frontend.set_cookie(an_hour_ago.sign(issued))
        token = issued.nonce
        response = await frontend.client.post(
            "/login", data={"username": "a", "password": "b", "csrf_token": token}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/login?form_expired=1"

    async def test_a_signed_in_browser_posting_the_login_form_is_refused(self, frontend):
        session = await frontend.signed_in()
        response = await frontend.client.post(
            "/login",
            data={"username": "a", "password": "b", "csrf_token": session.csrf_token},
        )
        assert response.status_code == 403
        assert "set-cookie" not in response.headers
        assert await frontend.store.get(session.id) is not None

    async def test_a_login_without_any_session_is_sent_to_a_fresh_form(self, frontend):
        response = await frontend.client.post(
            "/login", data={"username": "a", "password": "b", "csrf_token": "guess"}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/login?form_expired=1"
        assert "set-cookie" not in response.headers
        page = await frontend.client.get(response.headers["location"])
        assert page.status_code == 200
        assert "login form expired" in page.text
        assert 'name="csrf_token"' in page.text
        assert frontend.form_pass() is not None

    async def test_a_cookieless_login_post_does_not_replace_a_live_session(self, frontend):
        # A cross-site form post arrives without the SameSite=Lax cookie; answering it with a
        # new cookie would sign the victim out.
        await frontend.signed_in()
        before = frontend.session_id()
        cookies = frontend.client.cookies
        frontend.client.cookies = {}
        response = await frontend.client.post("/login", data={"username": "a", "password": "b"})
        assert "set-cookie" not in response.headers
        frontend.client.cookies = cookies
        assert frontend.session_id() == before

    @pytest.mark.parametrize("missing", ["username", "password"])
    async def test_an_empty_field_is_named(self, frontend, missing):
        data = {"username": "alice", "password": "pw", "csrf_token": await frontend.csrf()}
        data[missing] = ""
        response = await frontend.client.post("/login", data=data)
        assert response.status_code == 400
        assert "Enter your username and password" in response.text

    async def test_an_unreachable_gateway_is_said_plainly(self, frontend):
        data = {"username": "alice", "password": "pw", "csrf_token": await frontend.csrf()}
        response = await frontend.client.post("/login", data=data)
        assert response.status_code == 502
        assert "gateway is unreachable" in response.text
        assert "pw" not in response.text.split("<main", 1)[1].replace("password", "")


class TestPasswordRotationForm:
    async def test_the_form_asks_for_current_and_new_password_twice(self, frontend):
        response = await frontend.client.get("/password/rotate")
        assert response.status_code == 200
        for field in ("username", "current_password", "new_password", "new_password_confirm"):
            assert f'name="{field}"' in response.text

    async def test_a_rotation_without_csrf_token_is_refused(self, frontend):
        await frontend.client.get("/password/rotate")
        response = await frontend.client.post(
            "/password/rotate",
            data={"username": "a", "current_password": "x", "new_password": "y"},
        )
        assert response.status_code == 403

    async def test_a_rotation_without_a_pass_is_refused(self, frontend):
        token = await frontend.csrf("/password/rotate")
        frontend.client.cookies.clear()
        response = await frontend.client.post(
            "/password/rotate",
            data={
                "username": "a",
                "current_password": "x",
                "new_password": "y",
                "new_password_confirm": "y",
                "csrf_token": token,
            },
        )
        assert response.status_code == 403

    async def test_a_signed_in_user_gets_the_form_with_the_sessions_token(self, frontend):
        session = await frontend.signed_in(username="alice")
        response = await frontend.client.get("/password/rotate")
        assert f'name="csrf_token" value="{session.csrf_token}"' in response.text
        assert 'value="alice"' in response.text
        assert "set-cookie" not in response.headers

    async def test_new_passwords_that_differ_are_refused_before_asking_the_gateway(self, frontend):
        data = {
            "username": "alice",
            "current_password": "old",
            "new_password": "new-password-1",
            "new_password_confirm": "new-password-2",
            "csrf_token": await frontend.csrf("/password/rotate"),
        }
        response = await frontend.client.post("/password/rotate", data=data)
        assert response.status_code == 400
        assert "do not match" in response.text

    async def test_an_empty_field_is_named(self, frontend):
        data = {
            "username": "alice",
            "current_password": "",
            "new_password": "n",
            "new_password_confirm": "n",
            "csrf_token": await frontend.csrf("/password/rotate"),
        }
        response = await frontend.client.post("/password/rotate", data=data)
        assert response.status_code == 400
        assert "current password" in response.text


class TestLogout:
    async def test_logout_is_post_only(self, frontend):
        assert (await frontend.client.get("/logout")).status_code == 405

    async def test_logout_without_csrf_token_is_refused_and_keeps_the_session(self, frontend):
        session = await frontend.signed_in()
        response = await frontend.client.post("/logout")
        assert response.status_code == 403
        assert await frontend.store.get(session.id) is not None

    async def test_logout_destroys_the_session_even_when_the_gateway_is_down(self, frontend):
        session = await frontend.signed_in()
        response = await frontend.client.post("/logout", data={"csrf_token": session.csrf_token})
        assert response.status_code == 303
        assert response.headers["location"] == "/login?logged_out=1"
        assert await frontend.store.get(session.id) is None
        assert frontend.cookie_name not in frontend.client.cookies

    async def test_logout_without_a_session_just_goes_to_login(self, frontend):
        response = await frontend.client.post("/logout")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?logged_out=1"


@pytest.mark.e2e
@pytest.mark.postgres
class TestLoginThroughTheGateway:
    async def test_a_login_issues_a_new_session_id_holding_the_token(self, live, stack):
        username = stack.user("trading")
        await live.csrf()
        anonymous_id = live.session_id()
        response = await live.login(username)
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"
        session = await live.session()
        assert anonymous_id is None, "nothing is stored before the password checks out"
        assert session.id != live.client.cookies.get(live.cookie_name), "only its signed id"
        assert session.username == username
        assert session.roles == ("trading",)
        assert session.services == ("trading",)
        assert session.is_authenticated
        assert session.token_expires_at is not None

    async def test_the_token_never_reaches_the_browser(self, live, stack):
        username = stack.user("trading")
        await live.login(username)
        token = (await live.session()).bearer()
        page = await live.client.get("/dashboard")
        assert token not in page.text
        assert all(token not in value for value in live.client.cookies.values())

    async def test_a_wrong_password_and_an_unknown_user_read_the_same(self, live, stack):
        username = stack.user("trading")
        wrong = await live.login(username, "not the password at all")
        unknown = await live.login("nobody-" + username, "not the password at all")
        for response in (wrong, unknown):
            assert response.status_code == 401
            assert "Wrong username or password." in response.text
        assert await live.session() is None
        assert len(live.store) == 0

    async def test_a_deactivated_account_is_told_so(self, live, stack):
        username = stack.user("trading")
        stack.identity.deactivate_user(username)
        response = await live.login(username)
        assert response.status_code == 403
        assert "deactivated" in response.text

    async def test_repeated_failures_are_throttled_with_a_clear_message(self, live, stack):
        username = stack.user("trading")
        statuses = [
            (await live.login(username, "wrong password, again")).status_code for _ in range(8)
        ]
        assert statuses[0] == 401
        assert statuses[-1] == 429
        response = await live.login(username, "wrong password, again")
        assert "Too many attempts" in response.text


@pytest.mark.e2e
@pytest.mark.postgres
class TestExpiredPassword:
    async def test_a_first_sign_in_leads_to_the_form_to_set_a_password(self, live, stack):
        username = stack.user("trading", expired=True)
        response = await live.login(username)
        assert response.status_code == 303
        assert response.headers["location"] == "/password/rotate?first=1"
        form = await live.client.get("/password/rotate?first=1")
        assert '<h1 id="rotate-title">Set your password</h1>' in form.text
        assert "Your password has expired" not in form.text
        assert "12 to 1024 characters" in form.text
        assert "username or the product name" in form.text
        assert f'value="{username}"' in form.text
        assert await live.session() is None
        assert live.form_pass().pending_username == username
        assert len(live.store) == 0

    async def test_a_password_past_its_age_still_says_it_expired(self, live, stack):
        username = stack.user("trading")
        # Age the password past the 90-day rotation: the gateway's reason is then `expired`.
        url = stack.env["PORTFOLIO_DATABASE_URL"].replace("postgresql+asyncpg", "postgresql")
        connection = await asyncpg.connect(url)
        try:
            await connection.execute(
                "UPDATE user_accounts SET password_changed_at = '2000-01-01T00:00:00+00'"
                " WHERE username = $1",
                username,
            )
        finally:
            await connection.close()
        response = await live.login(username)
        assert response.headers["location"] == "/password/rotate"
        form = await live.client.get(response.headers["location"])
        assert "Your password has expired" in form.text
        assert '<h1 id="rotate-title">Change your password</h1>' in form.text

    async def test_the_first_sign_in_wording_needs_a_pending_account(self, live):
        form = await live.client.get("/password/rotate?first=1")
        assert '<h1 id="rotate-title">Change your password</h1>' in form.text
        assert "Set your password" not in form.text
        assert "12 to 1024 characters" in form.text, "the rules are shown before any attempt"

    async def test_rotating_the_password_signs_in_with_the_new_one(self, live, stack):
        username = stack.user("trading", expired=True)
        await live.login(username)
        before = live.session_id()
        new_password = "a brand new long passphrase"
        response = await live.client.post(
            "/password/rotate",
            data={
                "username": username,
                "current_password": PASSWORD,
                "new_password": new_password,
                "new_password_confirm": new_password,
                "csrf_token": await live.csrf("/password/rotate"),
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"
        assert live.session_id() != before
        assert (await live.session()).username == username
        dashboard = await live.client.get("/dashboard")
        assert "Your password was changed." in dashboard.text
        stack.identity.authenticate(username, new_password)

    async def test_a_wrong_current_password_is_named(self, live, stack):
        username = stack.user("trading", expired=True)
        response = await live.client.post(
            "/password/rotate",
            data={
                "username": username,
                "current_password": "not the current one",
                "new_password": "a brand new long passphrase",
                "new_password_confirm": "a brand new long passphrase",
                "csrf_token": await live.csrf("/password/rotate"),
            },
        )
        assert response.status_code == 401
        assert "Wrong username or current password." in response.text

    async def test_a_weak_new_password_shows_the_identity_services_reason(self, live, stack):
        username = stack.user("trading", expired=True)
        response = await live.client.post(
            "/password/rotate",
            data={
                "username": username,
                "current_password": PASSWORD,
                "new_password": "short",
                "new_password_confirm": "short",
                "csrf_token": await live.csrf("/password/rotate"),
            },
        )
        assert response.status_code == 422
        assert "12" in response.text  # the minimum length the identity service asks for


@pytest.mark.e2e
@pytest.mark.postgres
class TestLogoutThroughTheGateway:
    async def test_logout_revokes_the_token_at_the_gateway(self, live, stack):
        username = stack.user("trading")
        await live.login(username)
        session = await live.session()
        response = await live.client.post("/logout", data={"csrf_token": session.csrf_token})
        assert response.headers["location"] == "/login?logged_out=1"
        assert await live.store.get(session.id) is None
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            me = await gateway.get(
                "/auth/me", headers={"Authorization": f"Bearer {session.bearer()}"}
            )
        assert me.status_code == 401
        signed_out = await live.client.get("/login?logged_out=1")
        assert "You are signed out." in signed_out.text
