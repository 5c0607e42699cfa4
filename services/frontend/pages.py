"""Rendering a page, and the cookies and redirects a page answers with."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from services.frontend.csrf import FormPass
from services.frontend.sessions import Session
from shared.roles import is_admin

if TYPE_CHECKING:
    # For annotations only: the runtime holds the gateway client, whose errors are rendered
    # here, so importing it for real would import this module again.
    from services.frontend.runtime import Runtime


def runtime_of(request: Request) -> Runtime:
    """Return the runtime the lifespan built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


async def render(
    request: Request,
    name: str,
    *,
    session: Session | None = None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render a page; signed-in pages also get the menu and the session's deadlines."""
    runtime = runtime_of(request)
    store = runtime.sessions
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
            poll_seconds=runtime.settings.status_poll_seconds,
        )
    return runtime.templates.TemplateResponse(
        request, name, {**shared, **context}, status_code=status_code
    )


def set_session_cookie(response: Response, request: Request, session: Session) -> None:
    """Give the browser the signed id of its session (HttpOnly, SameSite=Lax)."""
    runtime = runtime_of(request)
    response.set_cookie(
        runtime.cookie_name,
        runtime.cookie_signer.sign(session.id),
        httponly=True,
        samesite="lax",
        secure=runtime.settings.security.cookie_secure,
        path="/",
    )


def set_form_pass_cookie(response: Response, request: Request, form_pass: FormPass) -> None:
    """Give the browser the signed pass of the form it is shown, in place of a session."""
    runtime = runtime_of(request)
    response.set_cookie(
        runtime.cookie_name,
        runtime.form_signer.sign(form_pass),
        max_age=runtime.form_signer.lifetime,
        httponly=True,
        samesite="lax",
        secure=runtime.settings.security.cookie_secure,
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    """Tell the browser to drop its session cookie."""
    runtime = runtime_of(request)
    response.delete_cookie(
        runtime.cookie_name,
        httponly=True,
        samesite="lax",
        secure=runtime.settings.security.cookie_secure,
        path="/",
    )


def redirect(url: str) -> RedirectResponse:
    """Answer with 303 See Other, so the browser follows with GET."""
    return RedirectResponse(url, status_code=303)
