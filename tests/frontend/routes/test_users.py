"""Admin user lifecycle pages against the real gateway: create, reset, rotate, delete."""

import re
import uuid

import httpx
import pytest

from tests.frontend.conftest import Frontend
from tests.frontend.stack import PASSWORD, Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SECRET = re.compile(r'<code id="secret-value">([^<]+)</code>')


async def as_admin(live: Frontend, stack: Stack) -> str:
    username = stack.user("admin", prefix="admin")
    await live.login(username)
    return username


async def csrf(live: Frontend) -> str:
    session = await live.session()
    assert session is not None
    return session.csrf_token


async def gateway_login(stack: Stack, username: str, password: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
        return await gateway.post("/auth/token", json={"username": username, "password": password})


class TestCreate:
    async def test_a_new_user_gets_a_one_time_password_shown_once(self, live, stack):
        await as_admin(live, stack)
        form = await live.client.get("/admin/users/new")
        assert form.status_code == 200
        assert 'name="roles" value="market"' in form.text
        name = f"new-{uuid.uuid4().hex[:8]}"
        page = await live.client.post(
            "/admin/users/new",
            data={"username": name, "roles": ["trading", "market"], "csrf_token": await csrf(live)},
        )
        assert page.status_code == 200
        assert f"User {name} was created" in page.text
        secret = SECRET.search(page.text)
        assert secret, "the one-time password is on the page"
        assert 'data-copy-target="secret-value"' in page.text
        assert '<script src="/static/copy.js" defer></script>' in page.text
        assert page.headers["cache-control"] == "no-store"
        user = stack.identity.get_user(name)
        assert sorted(user.roles) == ["market", "trading"]
        assert user.must_change_password
        refused = await gateway_login(stack, name, secret.group(1))
        assert refused.status_code == 403
        assert refused.json()["error"]["reason"] == "must_change_password"
        users = await live.client.get("/admin/users")
        assert secret.group(1) not in users.text, "shown once, never again"

    async def test_a_taken_name_shows_the_gateways_reason(self, live, stack):
        taken = stack.user("trading")
        await as_admin(live, stack)
        page = await live.client.post(
            "/admin/users/new",
            data={"username": taken.upper(), "roles": ["market"], "csrf_token": await csrf(live)},
        )
        assert page.status_code == 409
        assert 'role="alert"' in page.text
        assert f'value="{taken.upper()}"' in page.text, "the form keeps what was typed"
        assert stack.identity.get_user(taken).roles == ["trading"]

    async def test_no_role_is_refused_before_the_gateway_is_asked(self, live, stack):
        await as_admin(live, stack)
        name = f"new-{uuid.uuid4().hex[:8]}"
        page = await live.client.post(
            "/admin/users/new", data={"username": name, "csrf_token": await csrf(live)}
        )
        assert page.status_code == 400
        assert "Choose at least one role." in page.text

    async def test_a_weak_password_names_the_rule(self, live, stack):
        await as_admin(live, stack)
        name = f"new-{uuid.uuid4().hex[:8]}"
        page = await live.client.post(
            "/admin/users/new",
            data={
                "username": name,
                "roles": ["trading"],
                "password": "aaaaaaaaaaaa",
                "csrf_token": await csrf(live),
            },
        )
        assert page.status_code == 422
        assert 'role="alert"' in page.text

    async def test_a_form_without_the_csrf_token_creates_nobody(self, live, stack):
        await as_admin(live, stack)
        name = f"new-{uuid.uuid4().hex[:8]}"
        page = await live.client.post(
            "/admin/users/new", data={"username": name, "roles": ["trading"]}
        )
        assert page.status_code == 403
        users = await live.client.get("/admin/users")
        assert name not in users.text


class TestActions:
    async def test_reset_asks_first_then_shows_a_one_time_password(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        confirm = await live.client.get(f"/admin/users/{victim}/reset-password")
        assert confirm.status_code == 200
        assert f"Reset the password of {victim}?" in confirm.text
        assert (await gateway_login(stack, victim, PASSWORD)).status_code == 200
        page = await live.client.post(
            f"/admin/users/{victim}/reset-password", data={"csrf_token": await csrf(live)}
        )
        assert page.status_code == 200
        secret = SECRET.search(page.text)
        assert secret
        assert (await gateway_login(stack, victim, PASSWORD)).status_code == 401
        assert stack.identity.get_user(victim).must_change_password

    async def test_rotating_a_users_key_shows_it_once_and_it_works(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        confirm = await live.client.get(f"/admin/users/{victim}/rotate-api-key")
        assert f"Rotate the API key of {victim}?" in confirm.text
        page = await live.client.post(
            f"/admin/users/{victim}/rotate-api-key", data={"csrf_token": await csrf(live)}
        )
        secret = SECRET.search(page.text)
        assert secret
        key_id = stack.identity.get_user(victim).api_key_id
        assert key_id
        assert f"key id {key_id}" in page.text
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            answer = await gateway.get(
                "/api/trading/orders", headers={"X-API-Key": secret.group(1)}
            )
        assert answer.status_code == 200

    async def test_delete_then_the_user_can_never_sign_in(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        confirm = await live.client.get(f"/admin/users/{victim}/delete")
        assert f"Delete {victim}?" in confirm.text
        assert (await gateway_login(stack, victim, PASSWORD)).status_code == 200
        response = await live.client.post(
            f"/admin/users/{victim}/delete", data={"csrf_token": await csrf(live)}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/users"
        assert (await gateway_login(stack, victim, PASSWORD)).status_code != 200
        users = await live.client.get("/admin/users")
        assert f"User {victim} was deleted." in users.text
        row = re.search(rf"<th scope=\"row\"[^>]*>{victim}</th>(.*?)</tr>", users.text, re.S)
        assert row
        assert ">deleted<" in row.group(1)
        assert f"/admin/users/{victim}/reactivate" not in users.text

    async def test_reactivate_brings_a_deactivated_user_back(self, live, stack):
        victim = stack.user("trading")
        stack.identity.deactivate_user(victim)
        await as_admin(live, stack)
        users = await live.client.get("/admin/users")
        assert f"/admin/users/{victim}/reactivate" in users.text
        response = await live.client.post(
            f"/admin/users/{victim}/reactivate", data={"csrf_token": await csrf(live)}
        )
        assert response.status_code == 303
        assert stack.identity.get_user(victim).is_active

    async def test_an_action_without_the_csrf_token_changes_nothing(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        response = await live.client.post(f"/admin/users/{victim}/delete", data={})
        assert response.status_code == 403
        assert (await gateway_login(stack, victim, PASSWORD)).status_code == 200

    async def test_an_unknown_action_is_404(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        page = await live.client.get(f"/admin/users/{victim}/promote")
        assert page.status_code == 404

    async def test_a_non_admin_is_refused_by_the_gateway(self, live, stack):
        victim = stack.user("trading")
        await live.login(stack.user("trading"))
        response = await live.client.post(
            f"/admin/users/{victim}/delete", data={"csrf_token": await csrf(live)}
        )
        assert response.status_code == 403
        assert (await gateway_login(stack, victim, PASSWORD)).status_code == 200
