"""The admin's audit page: security events, filtered by time, user and type, page by page."""

from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.frontend.deps import GatewayDep, PageSession
from services.frontend.errors import GatewayError
from services.frontend.pages import render

router = APIRouter()

# The event types the identity service records, offered as suggestions in the filter.
EVENT_TYPES = (
    "login.succeeded",
    "login.password_verified",
    "login.failed",
    "login.throttled",
    "password.rotated",
    "password.expired",
    "password.reset",
    "api_key.rotated",
    "api_key.first_used",
    "user.created",
    "user.deactivated",
    "user.reactivated",
    "user.deleted",
    "user.roles_changed",
    "token.revoked",
    "mfa.enrolled",
    "mfa.removed",
    "mfa.used",
    "mfa.failed",
    "mfa.reset",
    "mfa.recovery_code_used",
)


def as_utc(since: str) -> str:
    """Read a time without a zone (what a datetime-local field sends) as UTC."""
    try:
        parsed = datetime.fromisoformat(since)
    except ValueError:
        return since  # the gateway names what is wrong with it
    return since if parsed.tzinfo is not None else f"{since}Z"


@router.get("/audit")
async def audit_page(
    request: Request,
    gateway: GatewayDep,
    session: PageSession,
    since: str = "",
    user: str = "",
    type: str = "",
    cursor: str = "",
    limit: str = "",
) -> Response:
    """Show one page of events, newest first, with a link to the next page."""
    filters = {"since": since.strip(), "user": user.strip(), "type": type.strip()}
    params = {name: value for name, value in filters.items() if value}
    if "since" in params:
        params["since"] = as_utc(params["since"])
    if cursor:
        params["cursor"] = cursor
    if limit:
        params["limit"] = limit
    events: list[object] = []
    next_cursor = None
    error = None
    status = 200
    try:
        page = await gateway.audit(session.bearer(), params)
        events = [event for event in page.get("events", []) if isinstance(event, dict)]
        next_cursor = page.get("next_cursor")
    except GatewayError as exc:
        if exc.status != 422:
            raise
        error, status = exc.message[:1].upper() + exc.message[1:], 422
    kept = {**filters, "limit": limit}
    next_query = {**{k: v for k, v in kept.items() if v}, "cursor": next_cursor or ""}
    return await render(
        request,
        "admin_audit.html",
        session=session,
        status_code=status,
        events=events,
        filters=filters,
        next_query=next_query if next_cursor else None,
        event_types=EVENT_TYPES,
        error=error,
        paged=bool(cursor),
    )
