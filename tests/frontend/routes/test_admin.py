"""Admin pages against the real gateway: it decides who is an admin, the frontend renders."""

import re

import httpx
import pytest

from tests.frontend.conftest import Frontend
from tests.frontend.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


async def as_admin(live: Frontend, stack: Stack) -> str:
    username = stack.user("admin", prefix="admin")
    await live.login(username)
    return username


class TestNonAdmins:
    @pytest.mark.parametrize("path", ["/admin/users", "/admin/api-keys"])
    async def test_the_gateway_refuses_and_the_page_says_not_allowed(self, live, stack, path):
        await live.login(stack.user("trading", "portfolio"))
        page = await live.client.get(path)
        assert page.status_code == 403
        assert "Not allowed" in page.text

    async def test_a_non_admin_cannot_deactivate_even_with_a_valid_form(self, live, stack):
        victim = stack.user("trading")
        await live.login(stack.user("trading"))
        session = await live.session()
        response = await live.client.post(
            f"/admin/users/{victim}/deactivate", data={"csrf_token": session.csrf_token}
        )
        assert response.status_code == 403
        assert stack.identity.get_user(victim).is_active


class TestUsersPage:
    async def test_the_audit_snapshot_lists_every_user_with_its_columns(self, live, stack):
        rotated = stack.user("trading", "market")
        stack.identity.rotate_api_key(rotated, "k" * 40)
        await as_admin(live, stack)
        page = await live.client.get("/admin/users")
        assert page.status_code == 200
        for heading in (
            "Username",
            "Roles",
            "Active",
            "Last login",
            "Password age",
            "Password expires",
            "API key last rotated",
        ):
            assert f">{heading}<" in page.text
        row = re.search(rf"<tr>\s*<th scope=\"row\"[^>]*>{rotated}</th>(.*?)</tr>", page.text, re.S)
        assert row, "every user has a row"
        assert ">trading<" in row.group(1)
        assert ">market<" in row.group(1)
        assert "active" in row.group(1)
        assert "never" in row.group(1), "the user never logged in"
        assert "no key" not in row.group(1), "the API key rotation time is shown"


class TestDeactivate:
    async def test_deactivation_asks_for_confirmation_first(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        page = await live.client.get(f"/admin/users/{victim}/deactivate")
        assert page.status_code == 200
        assert f"Deactivate {victim}?" in page.text
        assert f'action="/admin/users/{victim}/deactivate"' in page.text
        assert stack.identity.get_user(victim).is_active, "showing the question changes nothing"

    async def test_confirming_deactivates_the_user(self, live, stack):
        victim = stack.user("trading")
        await as_admin(live, stack)
        session = await live.session()
        response = await live.client.post(
            f"/admin/users/{victim}/deactivate", data={"csrf_token": session.csrf_token}
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/admin/users"
        assert not stack.identity.get_user(victim).is_active
        page = await live.client.get("/admin/users")
        assert f"User {victim} was deactivated." in page.text

    async def test_an_unknown_user_is_404(self, live, stack):
        await as_admin(live, stack)
        page = await live.client.get("/admin/users/nobody-at-all/deactivate")
        assert page.status_code == 404


class TestRoles:
    async def test_the_form_checks_the_current_roles(self, live, stack):
        user = stack.user("trading")
        await as_admin(live, stack)
        page = await live.client.get(f"/admin/users/{user}/roles")
        assert 'value="trading" checked' in page.text
        assert 'value="market">' in page.text

    async def test_a_change_is_shown_for_confirmation_before_it_is_made(self, live, stack):
        user = stack.user("trading")
        await as_admin(live, stack)
        session = await live.session()
        page = await live.client.post(
            f"/admin/users/{user}/roles",
            data={"roles": ["market", "strategy"], "csrf_token": session.csrf_token},
        )
        assert page.status_code == 200
        assert f"Change the roles of {user}?" in page.text
        assert '<input type="hidden" name="confirm" value="yes">' in page.text
        assert stack.identity.get_user(user).roles == ["trading"]

    async def test_confirming_replaces_the_roles(self, live, stack):
        user = stack.user("trading")
        await as_admin(live, stack)
        session = await live.session()
        response = await live.client.post(
            f"/admin/users/{user}/roles",
            data={
                "roles": ["market", "strategy"],
                "confirm": "yes",
                "csrf_token": session.csrf_token,
            },
        )
        assert response.status_code == 303
        assert sorted(stack.identity.get_user(user).roles) == ["market", "strategy"]
        page = await live.client.get("/admin/users")
        assert f"User {user} now has: market, strategy." in page.text

    async def test_an_unknown_role_shows_the_gateways_reason(self, live, stack):
        user = stack.user("trading")
        await as_admin(live, stack)
        session = await live.session()
        page = await live.client.post(
            f"/admin/users/{user}/roles",
            data={"roles": ["wizard"], "confirm": "yes", "csrf_token": session.csrf_token},
        )
        assert page.status_code == 422
        assert "wizard" in page.text
        assert stack.identity.get_user(user).roles == ["trading"]


class TestApiKeyUsage:
    async def test_the_page_shows_each_keys_use_through_the_gateway(self, live, stack):
        user = stack.user("trading")
        rotation = stack.identity.rotate_api_key(user, "u" * 40)
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            for _ in range(3):
                answer = await gateway.get(
                    "/api/trading/orders", headers={"X-API-Key": rotation.api_key}
                )
                assert answer.status_code == 200
        await as_admin(live, stack)
        page = await live.client.get("/admin/api-keys")
        assert page.status_code == 200
        row = re.search(
            rf"<tr>\s*<th scope=\"row\" data-label=\"Key id\"><code>(\w+)</code></th>\s*"
            rf"<td data-label=\"User\">{user}</td>\s*"
            rf"<td class=\"num\" data-label=\"Requests\">(\d+)</td>",
            page.text,
        )
        assert row, "the key's row names its user"
        assert int(row.group(2)) == 3
        assert rotation.api_key not in page.text
        # The totals are stored (identity store or Redis), not one gateway's memory.
        assert "kept across gateway restarts" in page.text
        assert "since the gateway started" not in page.text

    async def test_each_row_shows_status_classes_and_last_client_and_unused_keys_show(
        self, live, stack
    ):
        used = stack.user("trading")
        unused = stack.user("trading")
        key = stack.identity.rotate_api_key(used, "s" * 40).api_key
        stack.identity.rotate_api_key(unused, "n" * 40)
        async with httpx.AsyncClient(base_url=stack.gateway_url) as gateway:
            for path in ("/api/trading/orders", "/api/trading/orders", "/api/market/x"):
                await gateway.get(path, headers={"X-API-Key": key})
        await as_admin(live, stack)
        page = await live.client.get("/admin/api-keys")
        rows = {}
        for row in re.findall(r"<tr>\s*<th scope=\"row\".*?</tr>", page.text, re.S):
            user = re.search(r"data-label=\"User\">([^<]*)<", row)
            assert user
            rows[user.group(1)] = row
        assert re.search(r"<dt>2xx</dt><dd>2</dd>.*<dt>4xx</dt><dd>1</dd>", rows[used], re.S)
        assert 'data-label="Last client"><code>127.0.0.1</code>' in rows[used]
        # A key nobody used yet still has its row: 0 requests, no use, no client.
        assert 'data-label="Requests">0<' in rows[unused]
        assert 'data-label="Last client">—<' in rows[unused]
