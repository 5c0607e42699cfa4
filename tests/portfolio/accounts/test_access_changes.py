"""The access-change feed (`GET /internal/identity/changes`): what ends live access, paged."""

from datetime import datetime, timedelta

import pytest

from services.portfolio.accounts.service import CHANGE_FEED_GRACE
from services.portfolio.errors import InvalidCredentialsError, InvalidInputError
from tests.portfolio.conftest import PASSWORD, Clock
from tests.portfolio.http import open_client

NEW_PASSWORD = "another long passphrase"
API_KEY = "k" * 40


async def changed_users(identity, since, limit=100) -> list[str]:
    page = await identity.access_changes(since, limit=limit)
    return [change.username for change in page.changes]


# What appears


async def test_new_users_and_logins_do_not_appear(identity, clock: Clock):
    since = clock()
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    clock.advance(seconds=1)
    await identity.authenticate("alice", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("alice", "a wrong password here")
    assert await changed_users(identity, since) == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda identity: identity.deactivate_user("alice"), id="deactivate"),
        pytest.param(lambda identity: identity.set_roles("alice", ["trading"]), id="set_roles"),
        pytest.param(
            lambda identity: identity.rotate_password("alice", PASSWORD, NEW_PASSWORD),
            id="rotate_password",
        ),
        pytest.param(lambda identity: identity.rotate_api_key("alice", API_KEY), id="rotate_key"),
    ],
)
async def test_each_change_that_ends_access_appears_with_what_the_gateway_needs(
    identity, clock: Clock, change
):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    await identity.create_user("bob", PASSWORD, ["portfolio"])
    clock.advance(seconds=5)
    since = clock()
    await change(identity)
    page = await identity.access_changes(since, limit=100)
    (entry,) = page.changes
    user = await identity.get_user("alice")
    assert entry.username == "alice"
    assert entry.changed_at == since
    assert entry.is_active == user.is_active
    assert entry.roles == user.roles
    assert entry.api_key_id == user.api_key_id
    assert entry.password_changed_at == user.password_changed_at


async def test_a_deactivation_reports_the_account_inactive(identity, clock: Clock):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    since = clock()
    await identity.deactivate_user("alice")
    (entry,) = (await identity.access_changes(since, limit=10)).changes
    assert entry.is_active is False


# The watermark


async def test_a_change_stamped_exactly_at_since_is_included(identity, clock: Clock):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    clock.advance(seconds=3)
    stamp = clock()
    await identity.set_roles("alice", ["trading"])
    assert await changed_users(identity, stamp) == ["alice"]
    assert await changed_users(identity, stamp + timedelta(microseconds=1)) == []


async def test_changes_come_oldest_first_and_a_later_change_moves_the_user(identity, clock: Clock):
    since = clock()
    for name in ("alice", "bob", "carol"):
        await identity.create_user(name, PASSWORD, ["portfolio"])
    for name in ("carol", "alice", "bob"):
        clock.advance(seconds=1)
        await identity.set_roles(name, ["trading"])
    assert await changed_users(identity, since) == ["carol", "alice", "bob"]
    clock.advance(seconds=1)
    await identity.deactivate_user("carol")
    assert await changed_users(identity, since) == ["alice", "bob", "carol"]


async def test_without_since_the_page_is_empty_and_until_is_the_services_clock(
    identity, clock: Clock
):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    await identity.deactivate_user("alice")
    page = await identity.access_changes(None, limit=10)
    assert page.changes == []
    assert page.until == clock() - CHANGE_FEED_GRACE
    assert page.more is False


async def test_until_stays_behind_the_clock_so_late_commits_are_read(identity, clock: Clock):
    since = clock()
    clock.advance(minutes=5)
    page = await identity.access_changes(since, limit=10)
    assert page.until == clock() - CHANGE_FEED_GRACE
    # Never moves backwards past the reader's own watermark.
    page = await identity.access_changes(clock(), limit=10)
    assert page.until == clock()


# Paging


async def test_a_full_page_says_more_and_the_next_page_continues_from_its_last_stamp(
    identity, clock: Clock
):
    since = clock()
    names = [f"user{i}" for i in range(5)]
    for name in names:
        await identity.create_user(name, PASSWORD, ["portfolio"])
    for name in names:
        clock.advance(seconds=1)
        await identity.deactivate_user(name)
    clock.advance(minutes=1)

    seen: list[str] = []
    cursor = since
    pages = 0
    while True:
        page = await identity.access_changes(cursor, limit=2)
        pages += 1
        seen.extend(change.username for change in page.changes if change.username not in seen)
        if not page.more:
            break
        assert page.until == page.changes[-1].changed_at
        cursor = page.until
    assert seen == names
    # Each page after the first repeats the previous page's last row.
    assert pages == 4 + 1


async def test_a_full_page_of_one_stamp_does_not_loop(identity, clock: Clock):
    since = clock()
    for name in ("alice", "bob"):
        await identity.create_user(name, PASSWORD, ["portfolio"])
        await identity.deactivate_user(name)
    page = await identity.access_changes(since, limit=2)
    assert [c.username for c in page.changes] == ["alice", "bob"]
    assert page.more is False


async def test_a_naive_since_is_refused(identity):
    with pytest.raises(InvalidInputError, match="UTC offset"):
        await identity.access_changes(datetime(2025, 1, 1), limit=10)


# Over HTTP


@pytest.fixture
async def http(settings):
    async with open_client(settings) as (app, client):
        yield app.state.runtime.identity, client


async def test_the_endpoint_answers_the_feed_as_json(http):
    identity, client = http
    first = await client.get("/internal/identity/changes")
    assert first.status_code == 200, first.text
    assert first.json()["changes"] == []
    until = first.json()["until"]
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    await identity.deactivate_user("alice")
    response = await client.get("/internal/identity/changes", params={"since": until})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"changes", "until", "more"}
    (entry,) = body["changes"]
    assert entry == {
        "username": "alice",
        "is_active": False,
        "roles": ["portfolio"],
        "changed_at": entry["changed_at"],
        "api_key_id": None,
        "password_changed_at": entry["password_changed_at"],
    }
    assert entry["changed_at"] >= until


async def test_the_endpoint_needs_the_service_token(settings):
    async with open_client(settings, token=None) as (_, client):
        response = await client.get("/internal/identity/changes")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-01-01T00:00:00"}, "UTC offset"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
    ],
)
async def test_bad_parameters_get_a_clear_error(http, params, named):
    _, client = http
    response = await client.get("/internal/identity/changes", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert named in response.json()["error"]["message"]
