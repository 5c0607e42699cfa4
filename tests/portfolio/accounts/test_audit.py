"""The audit trail: one row per security event, written with the change, never a secret."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.portfolio.accounts import audit, gateway_state
from services.portfolio.accounts.audit import AuditContext, AuditQuery, EventType
from services.portfolio.accounts.models import AuditEvent
from services.portfolio.accounts.service import IdentityService
from services.portfolio.errors import (
    InvalidCredentialsError,
    InvalidInputError,
    PasswordExpiredError,
    TooManyAttemptsError,
    UserExistsError,
)
from tests.portfolio.conftest import PASSWORD, env_secrets, make_settings

API_KEY = "k3y-" + "0123456789abcdef" * 3
BY_ADMIN = AuditContext(actor="root", client_address="203.0.113.7", request_id="req-1")


async def rows(identity: IdentityService) -> list[AuditEvent]:
    async with identity.database.sessions() as session:
        return list((await session.scalars(select(AuditEvent).order_by(AuditEvent.id))).all())


async def kinds(identity: IdentityService) -> list[tuple[str, str | None, str]]:
    return [(row.event_type, row.subject, row.outcome) for row in await rows(identity)]


async def test_each_change_writes_its_event_with_who_where_and_which_request(identity):
    await identity.create_user("alice", PASSWORD, ["portfolio"], audit=BY_ADMIN)
    await identity.authenticate("alice", PASSWORD, audit=BY_ADMIN)
    await identity.rotate_password("alice", PASSWORD, "velvet quasar mandolin", audit=BY_ADMIN)
    await identity.rotate_api_key("alice", API_KEY, audit=BY_ADMIN)
    await identity.verify_api_key(API_KEY, audit=BY_ADMIN)
    await identity.verify_api_key(API_KEY, audit=BY_ADMIN)  # not a first use
    await identity.set_roles("alice", ["trading"], audit=BY_ADMIN)
    await identity.deactivate_user("alice", audit=BY_ADMIN)

    assert await kinds(identity) == [
        ("user.created", "alice", "success"),
        ("login.succeeded", "alice", "success"),
        ("password.rotated", "alice", "success"),
        ("api_key.rotated", "alice", "success"),
        ("api_key.first_used", "alice", "success"),
        ("user.roles_changed", "alice", "success"),
        ("user.deactivated", "alice", "success"),
    ]
    for row in await rows(identity):
        assert (row.actor, row.client_address, row.request_id) == ("root", "203.0.113.7", "req-1")
    detail = {row.event_type: row.detail for row in await rows(identity)}
    assert detail["user.created"] == {"roles": ["portfolio"], "must_change_password": False}
    assert detail["user.roles_changed"] == {"roles": ["trading"]}
    key_id = (await identity.get_user("alice")).api_key_id
    assert detail["api_key.rotated"] == {"key_id": key_id, "generated": False}
    assert detail["api_key.first_used"] == {"key_id": key_id}


async def test_refused_logins_are_audited_as_failures(database, clock):
    settings = make_settings(
        str(database.engine.url.render_as_string(hide_password=False)),
        login_throttle_threshold=2,
    )
    identity = IdentityService(database, settings, secrets_manager=env_secrets(), clock=clock)
    await identity.create_user("bob", PASSWORD, ["portfolio"], must_change_password=True)
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("bob", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("bob", "wrong but long password")
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("nobody", "wrong but long password")
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("bob", "wrong but long password")
    with pytest.raises(TooManyAttemptsError):
        await identity.authenticate("bob", PASSWORD)

    assert await kinds(identity) == [
        ("user.created", "bob", "success"),
        ("password.expired", "bob", "failure"),
        ("login.failed", "bob", "failure"),
        ("login.failed", None, "failure"),
        ("login.failed", "bob", "failure"),
        ("login.throttled", "bob", "failure"),
    ]
    expired = (await rows(identity))[1]
    assert expired.detail == {"reason": "must_change_password"}
    # A name without an account may be a password typed into the username field.
    assert (await rows(identity))[3].detail == {"account": "unknown"}
    assert expired.actor is None  # the CLI and Python callers act as the system


async def test_no_row_holds_a_password_or_a_key(identity):
    await identity.create_user("carol", PASSWORD, ["admin"])
    await identity.authenticate("carol", PASSWORD)
    await identity.rotate_api_key("carol", API_KEY)
    await identity.verify_api_key(API_KEY)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("carol", "a wrong long password")
    dumped = json.dumps(
        [audit.event_out(row).model_dump(mode="json") for row in await rows(identity)]
    )
    for secret in (PASSWORD, API_KEY, "a wrong long password"):
        assert secret not in dumped


async def test_a_refused_change_leaves_no_event(identity):
    await identity.create_user("dave", PASSWORD, ["portfolio"])
    with pytest.raises(UserExistsError):
        await identity.create_user("DAVE", PASSWORD, ["trading"])
    assert await kinds(identity) == [("user.created", "dave", "success")]


class AuditWriteFailedError(Exception):
    """The audit row was written, then its transaction failed."""


# Each change made through the identity service, on "olga" (an admin with a key, who is not
# the last admin: the refusals of the last-admin guard are not what is under test here).
CHANGES = {
    "create": lambda i: i.create_user("zed", PASSWORD, ["portfolio"]),
    "deactivate": lambda i: i.deactivate_user("olga"),
    "roles": lambda i: i.set_roles("olga", ["trading"]),
    "delete": lambda i: i.delete_user("olga"),
    "reset": lambda i: i.reset_password("olga"),
    "rotate_password": lambda i: i.rotate_password("olga", PASSWORD, "velvet quasar mandolin"),
    "rotate_api_key": lambda i: i.rotate_api_key("olga", generate=True),
}


@pytest.mark.parametrize("change", CHANGES)
async def test_a_change_whose_audit_row_fails_is_not_made(identity, clock, monkeypatch, change):
    await identity.create_user("root", PASSWORD, ["admin"])
    await identity.create_user("olga", PASSWORD, ["admin", "portfolio"])
    await identity.rotate_api_key("olga", API_KEY)
    before = (await identity.list_users(), await kinds(identity))
    real = audit.record

    async def record_then_fail(*args, **kwargs):
        await real(*args, **kwargs)
        raise AuditWriteFailedError

    monkeypatch.setattr(audit, "record", record_then_fail)
    clock.advance(hours=1)  # a change that went through would show in every time it sets
    with pytest.raises(AuditWriteFailedError):
        await CHANGES[change](identity)
    monkeypatch.setattr(audit, "record", real)

    assert (await identity.list_users(), await kinds(identity)) == before
    assert (await identity.authenticate("olga", PASSWORD)).username == "olga"
    assert (await identity.verify_api_key(API_KEY)).username == "olga"


async def test_a_logout_whose_audit_row_fails_is_not_stored(identity, clock, monkeypatch):
    await identity.create_user("olga", PASSWORD, ["portfolio"])
    real = audit.record

    async def record_then_fail(*args, **kwargs):
        await real(*args, **kwargs)
        raise AuditWriteFailedError

    monkeypatch.setattr(audit, "record", record_then_fail)
    with pytest.raises(AuditWriteFailedError):
        await gateway_state.revoke_token(
            identity.database,
            BY_ADMIN,
            jti="jti-1",
            username="olga",
            expires_at=clock() + timedelta(hours=1),
            now=clock(),
        )
    assert await gateway_state.live_revocations(identity.database, now=clock()) == []
    assert await kinds(identity) == [("user.created", "olga", "success")]


async def test_pages_run_newest_first_and_filter(identity):
    for name in ("erin", "frank", "grace"):
        await identity.create_user(name, PASSWORD, ["portfolio"])
    await identity.deactivate_user("frank")

    first = await audit.read_page(identity.database, AuditQuery(), cursor=None, limit=3)
    assert [(e.type, e.subject) for e in first.events] == [
        ("user.deactivated", "frank"),
        ("user.created", "grace"),
        ("user.created", "frank"),
    ]
    assert first.next_cursor is not None
    second = await audit.read_page(
        identity.database, AuditQuery(), cursor=first.next_cursor, limit=3
    )
    assert [(e.type, e.subject) for e in second.events] == [("user.created", "erin")]
    assert second.next_cursor is None

    frank = await audit.read_page(
        identity.database, AuditQuery(user="frank"), cursor=None, limit=10
    )
    assert [e.type for e in frank.events] == ["user.deactivated", "user.created"]
    created = AuditQuery(event_type=EventType.USER_CREATED)
    page = await audit.read_page(identity.database, created, cursor=None, limit=10)
    assert [e.subject for e in page.events] == ["grace", "frank", "erin"]


async def test_since_keeps_the_events_at_or_after_it(identity, clock):
    await identity.create_user("heidi", PASSWORD, ["portfolio"])
    clock.advance(hours=2)
    since = clock()
    await identity.deactivate_user("heidi")
    page = await audit.read_page(identity.database, AuditQuery(since=since), cursor=None, limit=10)
    assert [e.type for e in page.events] == ["user.deactivated"]
    assert page.events[0].time == since


@pytest.mark.parametrize("cursor", ["", "not-base64!", "eyJiZWZvcmUiOiAtMX0", "e30"])
async def test_a_cursor_this_api_never_gave_is_refused(identity, cursor):
    with pytest.raises(InvalidInputError, match="cursor"):
        await audit.read_page(identity.database, AuditQuery(), cursor=cursor, limit=10)


def test_an_unknown_event_type_is_refused_naming_the_choices():
    with pytest.raises(InvalidInputError, match=r"login\.failed"):
        audit.parse_event_type("login.maybe")


def test_untrusted_context_values_are_kept_only_in_their_form():
    context = AuditContext.from_untrusted("Root", "not an address", "bad id with spaces")
    assert context == AuditContext(actor="root", client_address=None, request_id=None)
    assert AuditContext.from_untrusted(None, "2001:db8::1", "abc-1").client_address == "2001:db8::1"
