"""Dependency aliases: route signatures name what they need, not how it is found."""

from typing import Annotated

from fastapi import Depends, Request

from services.frontend.csrf import FormPass, FormPassSigner
from services.frontend.errors import CsrfError, LoginRequiredError, SessionExpiredError
from services.frontend.gateway import Gateway
from services.frontend.pages import runtime_of
from services.frontend.runtime import Runtime
from services.frontend.sessions import Session, SessionStore, csrf_matches
from shared.logs import note_user


def get_runtime(request: Request) -> Runtime:
    """Return the runtime the lifespan built."""
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> SessionStore:
    """Return the session store."""
    return runtime.sessions


def get_gateway(runtime: RuntimeDep) -> Gateway:
    """Return the gateway client opened by the lifespan."""
    return runtime.gateway


def get_form_signer(runtime: RuntimeDep) -> FormPassSigner:
    """Return the signer of the form passes given before sign-in."""
    return runtime.form_signer


StoreDep = Annotated[SessionStore, Depends(get_store)]
GatewayDep = Annotated[Gateway, Depends(get_gateway)]
FormSignerDep = Annotated[FormPassSigner, Depends(get_form_signer)]


async def optional_session(request: Request, runtime: RuntimeDep) -> Session | None:
    """Return the browser's live session, if its cookie is genuine and the session lives."""
    value = request.cookies.get(runtime.cookie_name)
    session_id = runtime.cookie_signer.unsign(value) if value else None
    # Remembered so an error handler can destroy the session and tell "expired" from "never".
    request.state.session_id = session_id
    if session_id is None:
        return None
    session = await runtime.sessions.get(session_id)
    request.state.session_gone = session is None
    return session


OptionalSession = Annotated[Session | None, Depends(optional_session)]


async def optional_form_pass(request: Request, runtime: RuntimeDep) -> FormPass | None:
    """Return the signed form pass the browser's cookie holds before sign-in, if genuine."""
    value = request.cookies.get(runtime.cookie_name)
    return runtime.form_signer.unsign(value) if value else None


OptionalFormPass = Annotated[FormPass | None, Depends(optional_form_pass)]


def _signed_in(request: Request, session: Session | None) -> Session:
    if session is not None and session.is_authenticated:
        if session.username:
            note_user(session.username)
        return session
    if getattr(request.state, "session_gone", False):
        raise SessionExpiredError()
    raise LoginRequiredError()


async def page_session(request: Request, session: OptionalSession, store: StoreDep) -> Session:
    """Return the signed-in session of a page load, counting it as activity."""
    signed_in = _signed_in(request, session)
    await store.save(signed_in, touch=True)
    return signed_in


async def background_session(request: Request, session: OptionalSession) -> Session:
    """Return the signed-in session of the page's own polling, which is not activity."""
    return _signed_in(request, session)


async def form_session(request: Request, session: OptionalSession, store: StoreDep) -> Session:
    """Return the signed-in session of a form post whose CSRF token matches."""
    signed_in = _signed_in(request, session)
    form = await request.form()
    token = form.get("csrf_token")
    if not csrf_matches(signed_in, token if isinstance(token, str) else None):
        raise CsrfError()
    await store.save(signed_in, touch=True)
    return signed_in


PageSession = Annotated[Session, Depends(page_session)]
BackgroundSession = Annotated[Session, Depends(background_session)]
FormSession = Annotated[Session, Depends(form_session)]
