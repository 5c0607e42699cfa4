"""The access-change feed (`GET /internal/identity/changes`): every committed change that
ends live access, exactly once, in commit order, paged by its unique id."""

import asyncio

import pytest
from sqlalchemy import text

from services.portfolio.accounts import store
from services.portfolio.errors import InvalidCredentialsError, InvalidInputError
from tests.portfolio.conftest import PASSWORD, Clock
from tests.portfolio.http import open_client

NEW_PASSWORD = "another long passphrase"
API_KEY = "k" * 40


async def changed_users(identity, after, limit=100) -> list[str]:
    page = await identity.access_changes(after, limit=limit)
    return [change.username for change in page.changes]


async def head(identity) -> int:
    return (await identity.access_changes(None, limit=1)).cursor


# What appears


async def test_new_users_and_logins_do_not_appear(identity):
    after = await head(identity)
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    await identity.authenticate("alice", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("alice", "a wrong password here")
    assert await changed_users(identity, after) == []


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
    after = await head(identity)
    answered = await change(identity)
    page = await identity.access_changes(after, limit=100)
    (entry,) = page.changes
    user = await identity.get_user("alice")
    assert entry.username == "alice"
    assert entry.changed_at == clock()
    assert entry.seq == after + 1
    assert page.cursor == after + 1
    assert entry.is_active == user.is_active
    assert entry.roles == user.roles
    assert entry.api_key_id == user.api_key_id
    assert entry.password_changed_at == user.password_changed_at
    # The user answered by the change, and read later, name the change's place in the feed.
    answered_user = getattr(answered, "user", answered)
    assert answered_user.access_seq == after + 1
    assert user.access_seq == after + 1


async def test_a_login_answers_with_the_users_last_change(identity):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    assert (await identity.authenticate("alice", PASSWORD)).access_seq is None
    await identity.set_roles("alice", ["trading"])
    seq = (await identity.get_user("alice")).access_seq
    assert seq is not None
    assert (await identity.authenticate("alice", PASSWORD)).access_seq == seq


async def test_each_entry_keeps_the_account_as_that_change_left_it(identity):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    after = await head(identity)
    await identity.set_roles("alice", ["trading", "market"])
    await identity.set_roles("alice", ["market"])
    await identity.deactivate_user("alice")
    page = await identity.access_changes(after, limit=10)
    assert [(c.roles, c.is_active) for c in page.changes] == [
        (["trading", "market"], True),
        (["market"], True),
        (["market"], False),
    ]
    assert [c.seq for c in page.changes] == [after + 1, after + 2, after + 3]


# The cursor


async def test_a_change_appears_once_and_never_again_after_its_cursor(identity):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    after = await head(identity)
    await identity.set_roles("alice", ["trading"])
    page = await identity.access_changes(after, limit=10)
    assert [c.username for c in page.changes] == ["alice"]
    again = await identity.access_changes(page.cursor, limit=10)
    assert again.changes == []
    assert again.cursor == page.cursor
    assert again.more is False


async def test_without_a_cursor_the_page_is_empty_and_starts_at_the_head(identity):
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    assert await head(identity) == 0
    await identity.deactivate_user("alice")
    page = await identity.access_changes(None, limit=10)
    assert page.changes == []
    assert page.cursor == 1
    assert page.more is False


async def test_a_window_starts_the_reader_at_the_first_change_that_recent(identity, clock: Clock):
    for name in ("alice", "bob", "carol"):
        await identity.create_user(name, PASSWORD, ["portfolio"])
    await identity.set_roles("alice", ["trading"])  # seq 1, ten minutes ago
    clock.advance(minutes=10)
    await identity.set_roles("bob", ["trading"])  # seq 2, now
    await identity.set_roles("carol", ["trading"])  # seq 3, now
    # The window is measured by this service's clock, never the reader's.
    page = await identity.access_changes(None, limit=10, window_seconds=300)
    assert page.cursor == 1
    assert await changed_users(identity, page.cursor) == ["bob", "carol"]
    clock.advance(seconds=1)
    quiet = await identity.access_changes(None, limit=10, window_seconds=0)
    assert quiet.cursor == 3


async def test_a_negative_cursor_is_refused(identity):
    with pytest.raises(InvalidInputError, match="after"):
        await identity.access_changes(-1, limit=10)


# Late commits


async def test_a_change_that_waits_on_a_lock_and_commits_late_is_still_read(
    identity, database, clock: Clock
):
    # The change is stamped before it waits: a feed by stamp would have passed it already.
    await identity.create_user("alice", PASSWORD, ["trading", "market"])
    await identity.create_user("bob", PASSWORD, ["portfolio"])
    reader = await head(identity)
    async with database.engine.connect() as blocker:
        if database.engine.dialect.name == "sqlite":
            await blocker.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await blocker.begin()
            await blocker.execute(
                text("SELECT id FROM user_accounts WHERE username = 'alice' FOR UPDATE")
            )
        late = asyncio.create_task(identity.set_roles("alice", ["market"]))
        await asyncio.sleep(0.3)
        assert not late.done()
        clock.advance(minutes=20)
        page = await identity.access_changes(reader, limit=10)
        assert page.changes == []
        reader = page.cursor
        await blocker.rollback()
    await late
    page = await identity.access_changes(reader, limit=10)
    assert [(c.username, c.roles) for c in page.changes] == [("alice", ["market"])]


async def test_an_id_taken_by_an_open_transaction_is_never_passed(identity, database):
    # Two writers: the first takes its feed id and is held open; the second must not
    # commit a higher id meanwhile, or a reader would pass the first one for good.
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    await identity.create_user("bob", PASSWORD, ["portfolio"])
    reader = await head(identity)
    async with database.sessions() as first:
        await first.begin()
        account = await store.update_user(first, "alice", roles=["trading"])
        assert account is not None
        await store.record_access_change(first, account, changed_at=account.updated_at)
        second = asyncio.create_task(identity.set_roles("bob", ["trading"]))
        await asyncio.sleep(0.3)
        page = await identity.access_changes(reader, limit=10)
        assert page.changes == []
        reader = page.cursor
        await first.commit()
    await second
    page = await identity.access_changes(reader, limit=10)
    assert [c.username for c in page.changes] == ["alice", "bob"]


# Paging


async def test_five_hundred_changes_at_one_moment_are_all_read_page_by_page(identity, clock: Clock):
    # The test clock stands still: all of them share one stamp, and paging by the unique
    # id still moves on.
    names = [f"user{i:03d}" for i in range(520)]
    for name in names:
        await identity.create_user(name, PASSWORD, ["portfolio"])
    for name in names:
        await identity.deactivate_user(name)
    seen: list[str] = []
    stamps: set[object] = set()
    cursor, pages = 0, 0
    while True:
        page = await identity.access_changes(cursor, limit=100)
        pages += 1
        seen.extend(change.username for change in page.changes)
        stamps.update(change.changed_at for change in page.changes)
        cursor = page.cursor
        if not page.more:
            break
    assert seen == names
    assert stamps == {clock()}
    assert pages == 6


# Over HTTP


@pytest.fixture
async def http(settings):
    async with open_client(settings) as (app, client):
        yield app.state.runtime.identity, client


async def test_the_endpoint_answers_the_feed_as_json(http):
    identity, client = http
    first = await client.get("/internal/identity/changes")
    assert first.status_code == 200, first.text
    assert first.json() == {"changes": [], "cursor": 0, "more": False}
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    await identity.deactivate_user("alice")
    response = await client.get("/internal/identity/changes", params={"after": 0})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"changes", "cursor", "more"}
    (entry,) = body["changes"]
    assert entry == {
        "seq": 1,
        "username": "alice",
        "is_active": False,
        "roles": ["portfolio"],
        "changed_at": entry["changed_at"],
        "api_key_id": None,
        "password_changed_at": entry["password_changed_at"],
    }
    assert body["cursor"] == 1
    assert body["more"] is False


async def test_the_endpoint_needs_the_service_token(settings):
    async with open_client(settings, token=None) as (_, client):
        response = await client.get("/internal/identity/changes")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"after": "yesterday"}, "after"),
        ({"after": "-1"}, "after"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"window": "-5"}, "window"),
    ],
)
async def test_bad_parameters_get_a_clear_error(http, params, named):
    _, client = http
    response = await client.get("/internal/identity/changes", params=params)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"
    assert named in response.json()["error"]["message"]
