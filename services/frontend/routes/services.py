"""The signed-in pages: dashboard, one page per service, and the session's status."""

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.frontend.deps import BackgroundSession, GatewayDep, PageSession, StoreDep
from services.frontend.errors import PageNotFoundError, SessionExpiredError
from services.frontend.gateway import Gateway, Reply
from services.frontend.pages import render
from services.frontend.sessions import Session, SessionStore
from shared.roles import Service

router = APIRouter()

# What a service page shows: the stubs echo any path (the portfolio has its own page).
SERVICE_PATHS = ("status",)


async def refresh_identity(store: SessionStore, gateway: Gateway, session: Session) -> None:
    """Ask the gateway what the session's user may reach now; a 401 ends the session."""
    if session.token_expires_at is not None and session.token_expires_at <= time.time():
        raise SessionExpiredError()
    identity = await gateway.me(session.bearer())
    session.roles, session.services = identity.roles, identity.services
    if identity.expires_at is not None:
        session.token_expires_at = identity.expires_at
    await store.save(session, touch=False)


@router.get("/dashboard")
async def dashboard(
    request: Request, store: StoreDep, gateway: GatewayDep, session: PageSession
) -> Response:
    """Show the user, roles, token expiry and the services the user may reach."""
    await refresh_identity(store, gateway, session)
    return await render(request, "dashboard.html", session=session)


@router.get("/services/{service}")
async def service_page(
    request: Request, service: str, store: StoreDep, gateway: GatewayDep, session: PageSession
) -> Response:
    """Show what the gateway returns for one service."""
    if service not in Service.__members__.values():
        raise PageNotFoundError(f"there is no service named {service!r}")
    await refresh_identity(store, gateway, session)
    replies: list[tuple[str, Reply]] = []
    for path in SERVICE_PATHS:
        replies.append((path, await gateway.service(session.bearer(), service, path)))
    # A page where every call failed answers like the first failure (403 when forbidden).
    answered = any(reply.ok for _, reply in replies)
    return await render(
        request,
        "service.html",
        session=session,
        status_code=200 if answered else replies[0][1].status,
        service=service,
        replies=replies,
    )


@router.get("/session/status")
async def session_status(
    request: Request, store: StoreDep, gateway: GatewayDep, session: BackgroundSession
) -> dict[str, Any]:
    """Tell the page's script whether the session lives and until when (not activity)."""
    await refresh_identity(store, gateway, session)
    return {
        "username": session.username,
        "roles": list(session.roles),
        "services": list(session.services),
        "token_expires_at": session.token_expires_at,
        "idle_expires_at": store.idle_deadline(session),
        "now": time.time(),
    }
