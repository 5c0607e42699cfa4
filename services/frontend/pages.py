"""Rendering: the Jinja2 environment, its filters, and the context every page shares."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.frontend.csrf import FormPass, FormPassSigner
from services.frontend.gateway import epoch
from services.frontend.sessions import Session, SessionStore
from shared.roles import is_admin

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def when(value: object) -> str:
    """Format a timestamp (epoch seconds or ISO 8601) as UTC, or a dash."""
    seconds = epoch(value)
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when_short(value: object) -> str:
    """Format a timestamp as UTC to the minute, for tables whose heading says UTC."""
    seconds = epoch(value)
    if seconds is None:
        return "—"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M")


def iso(value: object) -> str:
    """Format a timestamp as ISO 8601 UTC for a `datetime` attribute."""
    seconds = epoch(value)
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def days_since(value: object) -> str:
    """Say how many whole days ago a timestamp was."""
    seconds = epoch(value)
    if seconds is None:
        return "—"
    days = int((time.time() - seconds) // 86400)
    return "today" if days <= 0 else f"{days} day{'s' if days != 1 else ''}"


def is_past(value: object) -> bool:
    """Tell whether a timestamp lies in the past."""
    seconds = epoch(value)
    return seconds is not None and seconds <= time.time()


def pretty_json(value: object) -> str:
    """Indent a JSON value for a <pre> block."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def build_templates() -> Jinja2Templates:
    """Return the page templates with their filters (autoescaped HTML)."""
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    templates.env.filters.update(
        when=when,
        when_short=when_short,
        iso=iso,
        days_since=days_since,
        is_past=is_past,
        pretty_json=pretty_json,
    )
    templates.env.globals["epoch"] = epoch
    return templates


async def render(
    request: Request,
    name: str,
    *,
    session: Session | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page; signed-in pages also get the menu and the session's deadlines."""
    templates: Jinja2Templates = request.app.state.templates
    store: SessionStore = request.app.state.sessions
    signed_in = session is not None and session.is_authenticated
    flash = session.pop_flash() if session is not None else None
    if session is not None and flash is not None:
        await store.save(session, touch=False)
    shared: dict[str, Any] = {
        "session": session,
        "signed_in": signed_in,
        "csrf_token": session.csrf_token if session is not None else "",
        "flash": flash,
    }
    if session is not None and signed_in:
        shared.update(
            is_admin=is_admin(session.roles),
            nav_services=session.services,
            token_expires_at=session.token_expires_at,
            idle_expires_at=store.idle_deadline(session),
            server_now=time.time(),
            poll_seconds=request.app.state.settings.status_poll_seconds,
        )
    return templates.TemplateResponse(request, name, {**shared, **context}, status_code=status_code)


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    """Give the browser the signed id of its session (HttpOnly, SameSite=Lax)."""
    response.set_cookie(
        request.app.state.cookie_name,
        request.app.state.cookie_signer.sign(session.id),
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.security.cookie_secure,
        path="/",
    )


def set_form_pass_cookie(response: Response, request: Request, form_pass: FormPass) -> None:
    """Give the browser the signed pass of the form it is shown, in place of a session."""
    signer: FormPassSigner = request.app.state.form_signer
    response.set_cookie(
        request.app.state.cookie_name,
        signer.sign(form_pass),
        max_age=signer.lifetime,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.security.cookie_secure,
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tell the browser to drop its session cookie."""
    response.delete_cookie(
        request.app.state.cookie_name,
        httponly=True,
        samesite="lax",
        secure=request.app.state.settings.security.cookie_secure,
        path="/",
    )


def redirect(url: str) -> RedirectResponse:
    """Answer with 303 See Other, so the browser follows with GET."""
    return RedirectResponse(url, status_code=303)
