"""The admin's audit page against the real gateway: filters and cursor pagination."""

import re

import pytest

from tests.frontend.conftest import Frontend
from tests.frontend.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

ROW = re.compile(r'<td data-label="Type"><code>([a-z_.]+)</code></td>')


async def as_admin(live: Frontend, stack: Stack) -> str:
    username = stack.user("admin", prefix="admin")
    await live.login(username)
    return username


class TestAuditPage:
    async def test_a_users_events_are_listed_newest_first(self, live, stack):
        subject = stack.user("trading")
        await live.login(subject, "not the password at all")
        await live.login(subject)
        await live.client.post("/logout", data={"csrf_token": (await live.session()).csrf_token})
        await as_admin(live, stack)
        page = await live.client.get("/admin/audit", params={"user": subject})
        assert page.status_code == 200
        types = ROW.findall(page.text)
        assert types[:3] == ["token.revoked", "login.succeeded", "login.failed"]
        assert f'<input id="user" name="user" value="{subject}">' in page.text
        assert ">failure<" in page.text
        assert "127.0.0.1" in page.text, "the browser's address is the client"

    async def test_details_read_as_words_not_python(self, live, stack):
        subject = stack.user("trading", "market")
        await as_admin(live, stack)
        page = await live.client.get(
            "/admin/audit", params={"user": subject, "type": "user.created"}
        )
        assert ROW.findall(page.text) == ["user.created"]
        assert '<span class="muted">must_change_password:</span> no</div>' in page.text
        assert '<span class="muted">roles:</span> trading, market</div>' in page.text
        assert "False" not in page.text

    async def test_the_type_filter_keeps_one_type(self, live, stack):
        subject = stack.user("trading")
        await live.login(subject, "not the password at all")
        await as_admin(live, stack)
        page = await live.client.get(
            "/admin/audit", params={"user": subject, "type": "login.failed"}
        )
        assert ROW.findall(page.text) == ["login.failed"]
        assert "<option selected>login.failed</option>" in page.text

    async def test_the_next_page_link_carries_the_filters_and_the_cursor(self, live, stack):
        subject = stack.user("trading")
        for _ in range(3):
            await live.login(subject, "not the password at all")
        await as_admin(live, stack)
        first = await live.client.get("/admin/audit", params={"user": subject, "limit": "3"})
        assert ROW.findall(first.text) == ["login.failed"] * 3
        link = re.search(r'<a href="(/admin/audit\?[^"]+)" rel="next">', first.text)
        assert link
        href = link.group(1).replace("&amp;", "&")
        assert f"user={subject}" in href
        assert "cursor=" in href
        assert "limit=3" in href
        second = await live.client.get(href)
        assert ROW.findall(second.text) == ["user.created"]
        assert 'rel="next"' not in second.text, "the last page has no next link"
        assert "First page" in second.text

    async def test_a_since_in_the_future_lists_nothing(self, live, stack):
        await as_admin(live, stack)
        page = await live.client.get("/admin/audit", params={"since": "2999-01-01T00:00"})
        assert page.status_code == 200
        assert "No events match." in page.text

    async def test_a_bad_since_names_the_field(self, live, stack):
        await as_admin(live, stack)
        page = await live.client.get("/admin/audit", params={"since": "yesterday-ish"})
        assert page.status_code == 422
        assert 'role="alert"' in page.text
        assert "since" in page.text.split('role="alert">')[1].split("</p>")[0]

    async def test_a_non_admin_is_refused(self, live, stack):
        await live.login(stack.user("trading"))
        page = await live.client.get("/admin/audit")
        assert page.status_code == 403
