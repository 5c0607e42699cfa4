"""The audit trail: security events as rows, written with the change they record."""

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.accounts.models import AuditEvent
from services.portfolio.accounts.schemas import AuditEventOut, AuditPageOut
from services.portfolio.db import Database
from services.portfolio.errors import InvalidInputError
from shared.usernames import InvalidUsernameError, normalize_username

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class EventType(StrEnum):
    """What happened; `group.verb`, so a SIEM can filter on the prefix."""

    LOGIN_SUCCEEDED = "login.succeeded"
    # The password checked out and a second factor is due: not a sign-in yet (that is the
    # `login.succeeded` the second step records).
    LOGIN_PASSWORD_VERIFIED = "login.password_verified"  # noqa: S105  # nosec B105 - an event name
    LOGIN_FAILED = "login.failed"
    LOGIN_THROTTLED = "login.throttled"
    PASSWORD_ROTATED = "password.rotated"  # noqa: S105  # nosec B105 - an event name
    PASSWORD_EXPIRED = "password.expired"  # noqa: S105  # nosec B105 - an event name
    PASSWORD_RESET = "password.reset"  # noqa: S105  # nosec B105 - an event name
    API_KEY_ROTATED = "api_key.rotated"
    API_KEY_FIRST_USED = "api_key.first_used"
    USER_CREATED = "user.created"
    USER_DEACTIVATED = "user.deactivated"
    USER_REACTIVATED = "user.reactivated"
    USER_DELETED = "user.deleted"
    ROLES_CHANGED = "user.roles_changed"
    TOKEN_REVOKED = "token.revoked"  # noqa: S105  # nosec B105 - an event name
    MFA_ENROLLED = "mfa.enrolled"
    MFA_REMOVED = "mfa.removed"
    MFA_USED = "mfa.used"
    MFA_FAILED = "mfa.failed"
    MFA_RESET = "mfa.reset"
    MFA_RECOVERY_CODE_USED = "mfa.recovery_code_used"


class Outcome(StrEnum):
    """How the attempt ended."""

    SUCCESS = "success"
    FAILURE = "failure"


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who asked and from where: the gateway passes it along, the CLI leaves it empty."""

    actor: str | None = None
    client_address: str | None = None
    request_id: str | None = None

    @classmethod
    def from_untrusted(
        cls, actor: str | None, client_address: str | None, request_id: str | None
    ) -> "AuditContext":
        """Keep each value only if it has the form it must have (a row is never garbage)."""
        return cls(
            actor=_username_or_none(actor),
            client_address=_address_or_none(client_address),
            request_id=request_id
            if request_id and _SANE_REQUEST_ID.fullmatch(request_id)
            else None,
        )


SYSTEM = AuditContext()


def _username_or_none(value: str | None) -> str | None:
    try:
        return normalize_username(value) if value else None
    except InvalidUsernameError:
        return None


def _address_or_none(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


async def record(
    session: AsyncSession,
    context: AuditContext,
    event_type: EventType,
    *,
    subject: str | None,
    at: datetime,
    outcome: Outcome = Outcome.SUCCESS,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one event inside the caller's transaction (it commits or rolls back with it)."""
    await session.execute(
        insert(AuditEvent).values(
            occurred_at=at,
            event_type=event_type.value,
            actor=context.actor,
            subject=_username_or_none(subject),
            client_address=context.client_address,
            request_id=context.request_id,
            outcome=outcome.value,
            detail=detail,
        )
    )


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Which events to read: all filters optional, combined with AND."""

    since: datetime | None = None
    user: str | None = None  # as actor or as subject
    event_type: EventType | None = None


async def list_events(
    session: AsyncSession,
    query: AuditQuery,
    *,
    limit: int,
    before: int | None = None,
    after: int | None = None,
) -> Sequence[AuditEvent]:
    """Return up to `limit` events newest first (below id `before`), or with `after` oldest
    first (above id `after`)."""
    statement = select(AuditEvent)
    if query.since is not None:
        statement = statement.where(AuditEvent.occurred_at >= query.since)
    if query.user is not None:
        statement = statement.where(
            or_(AuditEvent.subject == query.user, AuditEvent.actor == query.user)
        )
    if query.event_type is not None:
        statement = statement.where(AuditEvent.event_type == query.event_type.value)
    if after is not None:
        statement = statement.where(AuditEvent.id > after).order_by(AuditEvent.id)
    else:
        if before is not None:
            statement = statement.where(AuditEvent.id < before)
        statement = statement.order_by(AuditEvent.id.desc())
    result = await session.scalars(statement.limit(limit))
    return result.all()


def encode_cursor(before: int) -> str:
    """Return the opaque cursor of the page that starts below event `before`."""
    raw = json.dumps({"before": before}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Return the event id a cursor from `encode_cursor` stands for, or raise
    `InvalidInputError`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        before = json.loads(raw)["before"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise InvalidInputError("cursor must be a value a previous page returned") from None
    if not isinstance(before, int) or isinstance(before, bool) or not 1 <= before < 2**62:
        raise InvalidInputError("cursor must be a value a previous page returned")
    return before


def parse_event_type(value: str | None) -> EventType | None:
    """Return the event type named `value`, or raise `InvalidInputError` naming the choices."""
    if value is None:
        return None
    try:
        return EventType(value)
    except ValueError:
        choices = ", ".join(member.value for member in EventType)
        raise InvalidInputError(f"type must be one of: {choices}") from None


def event_out(event: AuditEvent) -> AuditEventOut:
    """Return a stored event as the API and the CLI show it."""
    return AuditEventOut(
        id=event.id,
        time=event.occurred_at,
        type=event.event_type,
        actor=event.actor,
        subject=event.subject,
        client_address=event.client_address,
        request_id=event.request_id,
        outcome=event.outcome,
        detail=event.detail,
    )


async def read_page(
    database: Database, query: AuditQuery, *, cursor: str | None, limit: int
) -> AuditPageOut:
    """Return one page of events, newest first, and the cursor of the next one."""
    before = decode_cursor(cursor) if cursor is not None else None
    async with database.sessions() as session:
        events = await list_events(session, query, limit=limit + 1, before=before)
    page = [event_out(event) for event in events[:limit]]
    more = len(events) > limit
    return AuditPageOut(events=page, next_cursor=encode_cursor(page[-1].id) if more else None)


async def read_forward(
    database: Database, query: AuditQuery, *, page_size: int = 500
) -> AsyncIterator[AuditEventOut]:
    """Yield every matching event, oldest first, a page at a time (for the CLI)."""
    after = 0
    while True:
        async with database.sessions() as session:
            events = await list_events(session, query, limit=page_size, after=after)
        for event in events:
            yield event_out(event)
        if len(events) < page_size:
            return
        after = events[-1].id
