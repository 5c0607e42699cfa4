"""Signing in and out: login, expired-password rotation, logout."""

import logging
from contextlib import suppress
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.frontend import metrics
from services.frontend.csrf import FormPass, FormPassSigner
from services.frontend.deps import (
    FormSignerDep,
    GatewayDep,
    OptionalFormPass,
    OptionalSession,
    StoreDep,
)
from services.frontend.errors import (
    CsrfError,
    FrontendError,
    GatewayError,
    SessionExpiredError,
    SessionStoreUnavailable,
)
from services.frontend.gateway import Gateway, TokenGrant
from services.frontend.metrics import SessionEnd
from services.frontend.pages import (
    clear_session_cookie,
    redirect,
    render,
    set_form_pass_cookie,
    set_session_cookie,
)
from services.frontend.readiness import readiness_checks
from services.frontend.sessions import Session, SessionStore, csrf_matches
from shared.errors import ErrorCode
from shared.readiness import readiness_response

logger = logging.getLogger(__name__)

router = APIRouter()

FormText = Annotated[str, Form()]

# What a failed login or rotation says; any other error shows the gateway's own message.
LOGIN_MESSAGES = {
    ErrorCode.INVALID_CREDENTIALS: "Wrong username or password.",
    ErrorCode.ACCOUNT_INACTIVE: "This account is deactivated. Ask an administrator.",
}
ROTATE_MESSAGES = {
    ErrorCode.INVALID_CREDENTIALS: "Wrong username or current password.",
    ErrorCode.ACCOUNT_INACTIVE: "This account is deactivated. Ask an administrator.",
}


def failure_message(error: FrontendError, messages: dict[ErrorCode, str]) -> str:
    """Say why a login or rotation failed, in words for a person."""
    if isinstance(error, GatewayError):
        if error.code in messages:
            return messages[ErrorCode(error.code)]
        if error.code == ErrorCode.TOO_MANY_ATTEMPTS:
            wait = error.details.get("retry_after")
            return (
                f"Too many attempts. Try again in {wait} seconds."
                if wait
                else ("Too many attempts. Try again later.")
            )
    return error.message[:1].upper() + error.message[1:]


def status_of_failure(error: FrontendError) -> int:
    """Return the status a re-shown form answers with after a gateway failure."""
    if isinstance(error, GatewayError):
        return error.status
    return 504 if error.code == ErrorCode.UPSTREAM_TIMEOUT else 502


async def form_page(
    request: Request,
    signer: FormPassSigner,
    session: Session | None,
    form_pass: FormPass | None,
    template: str,
    **context: Any,
) -> Response:
    """Render a public form with the session's CSRF token, or else with a signed form pass.

    Nothing is stored for a browser before it signs in: its cookie carries the pass, renewed
    on each load but keeping its nonce, so the same form open in another tab still works.
    """
    if session is not None and session.is_authenticated:
        return await render(request, template, session=session, **context)
    fresh = signer.renew(form_pass) if form_pass is not None else signer.issue()
    page = await render(request, template, csrf_token=fresh.nonce, **context)
    set_form_pass_cookie(page, request, fresh)
    return page


async def sign_in(
    request: Request,
    store: SessionStore,
    gateway: Gateway,
    previous: Session | None,
    grant: TokenGrant,
    flash: str | None = None,
) -> Response:
    """Start a new session (a new id, so no fixation) holding the token; drop the old one."""
    session = await open_session(store, gateway, previous, grant, flash)
    response = redirect("/dashboard")
    set_session_cookie(response, request, session)
    return response


def second_step_redirect(request: Request, signer: FormPassSigner, error: GatewayError) -> Response:
    """After the password, when the gateway asks for a second factor: to the code page, or
    (no factor yet, and the role requires one) to enrolment, which is all it allows.

    Still nothing server-side: the browser's pass holds the challenge until it is answered.
    """
    challenge = error.details.get("challenge")
    if not isinstance(challenge, str):
        return redirect("/login")
    enrol = error.details.get("enrolment_required") is True
    response = redirect("/mfa/enrol" if enrol else "/login/mfa")
    set_form_pass_cookie(response, request, signer.issue(pending_challenge=challenge, enrol=enrol))
    return response


async def open_session(
    store: SessionStore,
    gateway: Gateway,
    previous: Session | None,
    grant: TokenGrant,
    flash: str | None = None,
) -> Session:
    """Create the session holding a new token (ending `previous`); return it."""
    identity = await gateway.me(grant.access_token)
    if previous is not None:
        await store.delete(previous.id)
        if previous.is_authenticated:
            metrics.session_ended(SessionEnd.REPLACED)
            await revoke(gateway, previous)
    try:
        session = await store.create(
            username=identity.username,
            access_token=grant.access_token,
            token_expires_at=grant.expires_at,
            roles=identity.roles,
            services=identity.services,
            flash=flash,
        )
    except SessionStoreUnavailable:
        # No session holds the new token, so nothing would ever revoke it: end it now.
        with suppress(FrontendError):
            await gateway.logout(grant.access_token)
        raise
    metrics.SESSIONS_STARTED.inc()
    return session


async def revoke(gateway: Gateway, session: Session) -> None:
    """Revoke the session's token at the gateway; a token already dead is fine."""
    try:
        await gateway.logout(session.bearer())
    except SessionExpiredError:
        pass
    except FrontendError as exc:
        # The session dies anyway; the token then lives until it expires on its own.
        logger.warning("could not revoke the gateway token of %s: %s", session.username, exc.code)


def browser_address(request: Request) -> str | None:
    """Return the browser's address, which the gateway's per-address login throttle needs."""
    return request.client.host if request.client else None


def check_csrf(session: Session | None, token: str) -> Session:
    """Return the session whose CSRF token the form carried, or refuse the form."""
    if session is None or not csrf_matches(session, token):
        raise CsrfError()
    return session


@router.get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    """Answer liveness probes."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
async def readyz(gateway: GatewayDep, store: StoreDep) -> Response:
    """Answer 200 while the gateway and the session store answer, else 503 naming which."""
    return readiness_response(await readiness_checks(gateway, store))


@router.get("/")
async def home(session: OptionalSession) -> Response:
    """Send the browser to its dashboard, or to the login page."""
    signed_in = session is not None and session.is_authenticated
    return redirect("/dashboard" if signed_in else "/login")


@router.get("/login")
async def login_page(
    request: Request,
    signer: FormSignerDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
    expired: bool = False,
    logged_out: bool = False,
    form_expired: bool = False,
) -> Response:
    """Show the login form."""
    if session is not None and session.is_authenticated:
        return redirect("/dashboard")
    notice = None
    if form_expired:
        notice = "The login form expired. Please try again."
    elif expired:
        notice = "Your session expired. Please sign in again."
    elif logged_out:
        notice = "You are signed out."
    return await form_page(request, signer, session, form_pass, "login.html", notice=notice)


@router.post("/login")
async def login(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    signer: FormSignerDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
    username: FormText = "",
    password: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    """Exchange the password for a gateway token and start a new session."""
    if session is not None:
        # A signed-in browser is shown no login form: its cookie holds a session, no pass.
        raise CsrfError()
    if form_pass is None:
        # No genuine, unexpired form pass came with the form: it expired, is forged or
        # another frontend's, or the post is cross-site (SameSite=Lax withholds the cookie).
        # Never answer with a new cookie here: it would replace, and so end, a session the
        # browser still holds. The login page decides.
        return redirect("/login?form_expired=1")
    form: dict[str, Any] = {"username": username, "csrf_token": form_pass.nonce}
    if not form_pass.matches(csrf_token):
        error = "The login form expired. Please try again."
        return await render(request, "login.html", status_code=403, error=error, **form)
    username = form["username"] = username.strip()
    if not username or not password:
        error = "Enter your username and password."
        return await render(request, "login.html", status_code=400, error=error, **form)
    try:
        grant = await gateway.login(username, password, client=browser_address(request))
    except FrontendError as exc:
        if isinstance(exc, GatewayError) and exc.code == ErrorCode.MFA_REQUIRED:
            return second_step_redirect(request, signer, exc)
        if isinstance(exc, GatewayError) and exc.code == ErrorCode.PASSWORD_EXPIRED:
            # Still nothing server-side: the pass names whose password is to be changed.
            # A new account (or a reset password) is told to set one, not that it expired.
            first = exc.details.get("reason") == "must_change_password"
            response = redirect("/password/rotate?first=1" if first else "/password/rotate")
            set_form_pass_cookie(response, request, signer.issue(pending_username=username))
            return response
        return await render(
            request,
            "login.html",
            status_code=status_of_failure(exc),
            error=failure_message(exc, LOGIN_MESSAGES),
            **form,
        )
    return await sign_in(request, store, gateway, None, grant)


@router.get("/password/rotate")
async def rotate_page(
    request: Request,
    signer: FormSignerDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
    first: bool = False,
) -> Response:
    """Show the password rotation form (current password, new one twice)."""
    pending = form_pass.pending_username if form_pass is not None else None
    username = pending or (session.username if session is not None else None) or ""
    return await form_page(
        request,
        signer,
        session,
        form_pass,
        "password_rotate.html",
        username=username,
        expired=pending is not None,
        first=first and pending is not None,
    )


@router.post("/password/rotate")
async def rotate_password(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    signer: FormSignerDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
    username: FormText = "",
    current_password: FormText = "",
    new_password: FormText = "",
    new_password_confirm: FormText = "",
    csrf_token: FormText = "",
    first: FormText = "",
) -> Response:
    """Rotate the password at the gateway, then sign in with the new one."""
    context: dict[str, Any] = {}
    if session is not None:
        check_csrf(session, csrf_token)
    elif form_pass is not None and form_pass.matches(csrf_token):
        context["csrf_token"] = form_pass.nonce
    else:
        raise CsrfError()
    username = username.strip()
    expired = form_pass is not None and form_pass.pending_username is not None
    context.update(username=username, expired=expired, first=expired and first == "1")
    error = None
    if not username or not current_password or not new_password:
        error = "Fill in your username, current password and new password."
    elif new_password != new_password_confirm:
        error = "The two new passwords do not match."
    if error is not None:
        return await render(
            request,
            "password_rotate.html",
            session=session,
            status_code=400,
            error=error,
            **context,
        )
    try:
        client = browser_address(request)
        await gateway.rotate_password(username, current_password, new_password, client=client)
        grant = await gateway.login(username, new_password, client=client)
    except FrontendError as exc:
        if isinstance(exc, GatewayError) and exc.code == ErrorCode.MFA_REQUIRED:
            return second_step_redirect(request, signer, exc)
        return await render(
            request,
            "password_rotate.html",
            session=session,
            status_code=status_of_failure(exc),
            error=failure_message(exc, ROTATE_MESSAGES),
            **context,
        )
    return await sign_in(
        request, store, gateway, session, grant, flash="Your password was changed."
    )


@router.post("/logout")
async def logout(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    session: OptionalSession,
    csrf_token: FormText = "",
) -> Response:
    """Revoke the token at the gateway and destroy the session."""
    if session is not None:
        check_csrf(session, csrf_token)
        await store.delete(session.id)
        if session.is_authenticated:
            metrics.session_ended(SessionEnd.LOGOUT)
            await revoke(gateway, session)
    response = redirect("/login?logged_out=1")
    clear_session_cookie(response, request)
    return response
