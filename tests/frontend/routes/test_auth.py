"""Login, rotation and logout rules that hold whatever the gateway says.

What needs the gateway's answers is in test_with_gateway.py against the real processes.
"""

import pytest

from tests.frontend.conftest import running_frontend


class TestLoginPage:
    async def test_the_login_page_starts_a_session_for_its_csrf_token(self, frontend):
        response = await frontend.client.get("/login")
        assert response.status_code == 200
        session = await frontend.store.get(frontend.session_id())
        assert session is not None
        assert not session.is_authenticated
        assert f'name="csrf_token" value="{session.csrf_token}"' in response.text

    async def test_the_session_cookie_is_httponly_and_samesite_lax(self, frontend):
        cookie = (await frontend.client.get("/login")).headers["set-cookie"]
        assert cookie.startswith("lct_session=")
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie, "a local run over plain HTTP turns Secure off"

    async def test_the_cookie_is_secure_and_host_only_by_default(self):
        async with running_frontend(cookie_secure=True) as secure:
            cookie = (await secure.client.get("/login")).headers["set-cookie"]
        assert cookie.startswith("__Host-lct_session=")
        assert "Secure" in cookie
        assert "Domain" not in cookie

    async def test_the_cookie_holds_nothing_but_the_signed_session_id(self, frontend):
        await frontend.client.get("/login")
        value = frontend.client.cookies[frontend.cookie_name]
        session = await frontend.store.get(frontend.session_id())
        assert value.split(".")[0] == session.id
        assert session.csrf_token not in value

    async def test_reloading_keeps_the_same_session(self, frontend):
        first = await frontend.csrf()
        assert await frontend.csrf() == first

    async def test_the_expired_flag_tells_the_user_why(self, frontend):
        response = await frontend.client.get("/login?expired=1")
        assert "Your session expired" in response.text

    async def test_a_signed_in_browser_goes_to_its_dashboard(self, frontend):
        await frontend.signed_in()
        response = await frontend.client.get("/login")
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard"

    async def test_a_forged_cookie_gets_a_new_session(self, frontend):
        frontend.set_cookie("made-up-id.made-up-signature")
        response = await frontend.client.get("/login")
        assert response.status_code == 200
        assert frontend.session_id() is not None
        assert frontend.session_id() != "made-up-id"


class TestLoginForm:
    async def test_a_login_without_csrf_token_is_refused(self, frontend):
        await frontend.csrf()
        response = await frontend.client.post("/login", data={"username": "a", "password": "b"})
        assert response.status_code == 403
        assert "form expired" in response.text

    async def test_a_login_with_another_sessions_token_is_refused(self, frontend):
        await frontend.csrf()
        other = await frontend.store.create()
        response = await frontend.client.post(
            "/login", data={"username": "a", "password": "b", "csrf_token": other.csrf_token}
        )
        assert response.status_code == 403

    async def test_a_login_without_any_session_is_refused_with_a_fresh_form(self, frontend):
        response = await frontend.client.post(
            "/login", data={"username": "a", "password": "b", "csrf_token": "guess"}
        )
        assert response.status_code == 403
        assert 'name="csrf_token"' in response.text
        assert frontend.session_id() is not None

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
