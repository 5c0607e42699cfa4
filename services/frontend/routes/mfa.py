"""Second factors in the browser: the code after the password, TOTP enrolment (also the
enrolment an administrator must do before anything else), recovery codes, and the
account's security page."""

from typing import Annotated, Any

import segno
from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup

from services.frontend.csrf import FormPass
from services.frontend.deps import (
    FormSession,
    FormSignerDep,
    GatewayDep,
    OptionalFormPass,
    OptionalSession,
    PageSession,
    StoreDep,
)
from services.frontend.errors import CsrfError, FrontendError, GatewayError
from services.frontend.pages import redirect, render, set_session_cookie
from services.frontend.routes.auth import (
    browser_address,
    check_csrf,
    failure_message,
    form_page,
    open_session,
    status_of_failure,
)
from services.frontend.sessions import Session
from shared.errors import ErrorCode

router = APIRouter()

FormText = Annotated[str, Form()]

CODE_MESSAGES = {
    ErrorCode.INVALID_CREDENTIALS: (
        "That code did not work. Enter the code your app shows now, or a recovery code."
    ),
}
CHALLENGE_GONE = "/login?form_expired=1"


def qr_svg(uri: str) -> Markup:
    """Return the `otpauth://` URI as an inline SVG QR code, drawn here (no outside service)."""
    svg = segno.make(uri, error="m").svg_inline(scale=5, border=2, dark="#111", light="#fff")
    # segno writes only the QR's own elements and attributes: nothing from the user.
    return Markup(svg)  # noqa: S704  # nosec B704 - generated SVG, no user text


@router.get("/login/mfa")
async def second_step_page(
    request: Request,
    signer: FormSignerDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
) -> Response:
    """Ask for the second factor after the password."""
    if session is not None and session.is_authenticated:
        return redirect("/dashboard")
    if form_pass is None or form_pass.pending_challenge is None or form_pass.enrol:
        return redirect("/login")
    return await form_page(request, signer, session, form_pass, "mfa_verify.html")


@router.post("/login/mfa")
async def second_step(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
    code: FormText = "",
    recovery_code: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    """Answer the challenge with a TOTP code or a recovery code; then sign in."""
    if session is not None:
        # A signed-in browser is shown no second-step form: its cookie holds a session.
        raise CsrfError()
    if form_pass is None or form_pass.pending_challenge is None or form_pass.enrol:
        return redirect(CHALLENGE_GONE)
    if not form_pass.matches(csrf_token):
        raise CsrfError()
    code, recovery_code = code.strip(), recovery_code.strip()
    if bool(code) == bool(recovery_code):
        return await _code_form_again(
            request,
            "mfa_verify.html",
            "Enter the code your app shows, or one recovery code.",
            csrf_token=form_pass.nonce,
        )
    try:
        grant = await gateway.second_step(
            form_pass.pending_challenge,
            code=code or None,
            recovery_code=recovery_code or None,
            client=browser_address(request),
        )
    except FrontendError as exc:
        return await _code_form_again(request, "mfa_verify.html", exc, csrf_token=form_pass.nonce)
    new = await open_session(store, gateway, None, grant)
    response = redirect("/dashboard")
    set_session_cookie(response, request, new)
    return response


async def _code_form_again(
    request: Request,
    template: str,
    refusal: FrontendError | str,
    **context: Any,
) -> Response:
    """Show a code form again saying why the code was refused: a malformed entry (400) or the
    gateway's refusal (its status)."""
    if isinstance(refusal, FrontendError):
        status, error = status_of_failure(refusal), failure_message(refusal, CODE_MESSAGES)
    else:
        status, error = 400, refusal
    return await render(request, template, status_code=status, error=error, **context)


@router.get("/mfa/enrol")
async def enrol_page(
    request: Request,
    gateway: GatewayDep,
    signer: FormSignerDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
) -> Response:
    """Show a new TOTP secret as a QR code and as text, and ask for the first code.

    Signed in: the user adds a factor. Not signed in: only with the enrolment challenge
    the password step gave an account that must enrol; it reaches nothing else.
    """
    signed_in = session is not None and session.is_authenticated
    challenge = None
    if not signed_in:
        if form_pass is None or form_pass.pending_challenge is None or not form_pass.enrol:
            return redirect("/login")
        challenge = form_pass.pending_challenge
    token = session.bearer() if signed_in and session is not None else None
    try:
        started = await gateway.start_totp(token=token, challenge=challenge)
    except GatewayError as exc:
        if challenge is not None and exc.code == ErrorCode.INVALID_CREDENTIALS:
            return redirect(CHALLENGE_GONE)
        raise
    return await form_page(
        request,
        signer,
        session,
        form_pass,
        "mfa_enrol.html",
        confined=challenge is not None,
        **_enrolment(started),
    )


def _enrolment(started: dict[str, Any]) -> dict[str, Any]:
    uri = str(started.get("otpauth_uri", ""))
    return {
        "factor_id": started.get("factor_id"),
        "secret": started.get("secret"),
        "qr": qr_svg(uri) if uri else None,
    }


@router.post("/mfa/enrol")
async def confirm_enrolment(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
    factor_id: FormText = "",
    code: FormText = "",
    csrf_token: FormText = "",
) -> Response:
    """Confirm the enrolment with the first code; show the recovery codes this once."""
    caller = _enrolling_caller(session, form_pass, csrf_token)
    if caller is None:
        return redirect(CHALLENGE_GONE)
    token, challenge = caller
    try:
        number = int(factor_id)
    except ValueError:
        number = -1
    try:
        if not 1 <= number < 2**31 or not code.strip():
            raise ValueError
        codes, grant = await gateway.confirm_totp(
            number, code.strip(), token=token, challenge=challenge, client=browser_address(request)
        )
    except (FrontendError, ValueError) as exc:
        refusal = (
            exc if isinstance(exc, FrontendError) else "Enter the 6-digit code your app shows."
        )
        # Show the same secret again: the pending enrolment stays until confirmed.
        started = await gateway.start_totp(token=token, challenge=challenge)
        context: dict[str, Any] = {"confined": challenge is not None, **_enrolment(started)}
        if form_pass is not None and token is None:
            context["csrf_token"] = form_pass.nonce
        return await _code_form_again(
            request, "mfa_enrol.html", refusal, session=session, **context
        )
    if grant is not None:
        # The enrolment completed the sign-in: the first session starts now.
        new = await open_session(store, gateway, None, grant)
        page = await render(request, "mfa_recovery_codes.html", session=new, codes=codes)
        set_session_cookie(page, request, new)
        return page
    return await render(request, "mfa_recovery_codes.html", session=session, codes=codes)


@router.get("/account/security")
async def security_page(request: Request, gateway: GatewayDep, session: PageSession) -> Response:
    """List the caller's second factors, with remove and add."""
    factors = await gateway.mfa_factors(session.bearer())
    return await render(request, "account_security.html", session=session, mfa=factors)


@router.post("/account/security/{factor_id}/remove")
async def remove_factor(
    request: Request,
    factor_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    store: StoreDep,
    gateway: GatewayDep,
    session: FormSession,
) -> Response:
    """Remove a factor; the gateway refuses the last one of an account that needs one."""
    try:
        await gateway.remove_factor(session.bearer(), factor_id)
    except GatewayError as exc:
        if exc.status not in (404, 409):
            raise
        factors = await gateway.mfa_factors(session.bearer())
        return await render(
            request,
            "account_security.html",
            session=session,
            status_code=exc.status,
            mfa=factors,
            error=exc.message[:1].upper() + exc.message[1:],
        )
    session.flash = "The factor was removed."
    await store.save(session)
    return redirect("/account/security")


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise CsrfError()
    return body


def _json_error(error: FrontendError) -> JSONResponse:
    message = (
        failure_message(error, CODE_MESSAGES)
        if isinstance(error, GatewayError)
        else "the gateway could not be reached"
    )
    return JSONResponse({"message": message}, status_code=status_of_failure(error))


def _enrolling_caller(
    session: Session | None, form_pass: FormPass | None, csrf_token: object
) -> tuple[str | None, str | None] | None:
    """Return (bearer, enrolment challenge) of whoever enrols a factor, CSRF checked; None
    when the browser is neither signed in nor holding an enrolment challenge."""
    token = csrf_token if isinstance(csrf_token, str) else ""
    if session is not None and session.is_authenticated:
        check_csrf(session, token)
        return session.bearer(), None
    if form_pass is not None and form_pass.pending_challenge and form_pass.enrol:
        if not form_pass.matches(token):
            raise CsrfError()
        return None, form_pass.pending_challenge
    return None


def _passkey_caller(
    session: Session | None, form_pass: FormPass | None, csrf_token: object
) -> tuple[str | None, str | None]:
    """Return (bearer, enrolment challenge) of whoever registers a passkey, CSRF checked."""
    caller = _enrolling_caller(session, form_pass, csrf_token)
    if caller is None:
        raise CsrfError()
    return caller


@router.post("/mfa/passkey/options")
async def passkey_registration_options(
    request: Request, gateway: GatewayDep, session: OptionalSession, form_pass: OptionalFormPass
) -> Response:
    """Start a passkey registration for the page's script (JSON)."""
    body = await _json_body(request)
    token, challenge = _passkey_caller(session, form_pass, body.get("csrf_token"))
    try:
        started = await gateway.passkey_registration_options(token=token, challenge=challenge)
    except FrontendError as exc:
        return _json_error(exc)
    return JSONResponse(started)


@router.post("/mfa/passkey")
async def register_passkey(
    request: Request,
    store: StoreDep,
    gateway: GatewayDep,
    session: OptionalSession,
    form_pass: OptionalFormPass,
) -> Response:
    """Register the passkey the script created; the recovery codes go back to it, once."""
    body = await _json_body(request)
    token, challenge = _passkey_caller(session, form_pass, body.get("csrf_token"))
    handle, credential = body.get("handle"), body.get("credential")
    if not isinstance(handle, str) or not isinstance(credential, dict):
        return JSONResponse({"message": "handle and credential are required"}, status_code=422)
    try:
        codes, grant = await gateway.register_passkey(
            handle,
            credential,
            token=token,
            challenge=challenge,
            client=browser_address(request),
        )
    except FrontendError as exc:
        return _json_error(exc)
    answer = JSONResponse({"recovery_codes": codes, "next": "/dashboard"})
    if grant is not None:
        new = await open_session(store, gateway, None, grant)
        set_session_cookie(answer, request, new)
    return answer


@router.post("/login/mfa/passkey/options")
async def passkey_login_options(
    request: Request, gateway: GatewayDep, form_pass: OptionalFormPass
) -> Response:
    """Return the options of a passkey sign-in for the second-step page's script."""
    body = await _json_body(request)
    if form_pass is None or form_pass.pending_challenge is None or form_pass.enrol:
        return JSONResponse({"message": "sign in with your password again"}, status_code=401)
    token = body.get("csrf_token")
    if not form_pass.matches(token if isinstance(token, str) else ""):
        raise CsrfError()
    try:
        answer = await gateway.passkey_login_options(form_pass.pending_challenge)
    except FrontendError as exc:
        return _json_error(exc)
    return JSONResponse(answer)


@router.post("/login/mfa/passkey")
async def passkey_sign_in(
    request: Request, store: StoreDep, gateway: GatewayDep, form_pass: OptionalFormPass
) -> Response:
    """Answer the challenge with the passkey assertion the script got; then sign in."""
    body = await _json_body(request)
    if form_pass is None or form_pass.pending_challenge is None or form_pass.enrol:
        return JSONResponse({"message": "sign in with your password again"}, status_code=401)
    token = body.get("csrf_token")
    if not form_pass.matches(token if isinstance(token, str) else ""):
        raise CsrfError()
    credential = body.get("credential")
    if not isinstance(credential, dict):
        return JSONResponse({"message": "credential is required"}, status_code=422)
    try:
        grant = await gateway.passkey_sign_in(
            form_pass.pending_challenge, credential, client=browser_address(request)
        )
    except FrontendError as exc:
        return _json_error(exc)
    new = await open_session(store, gateway, None, grant)
    answer = JSONResponse({"next": "/dashboard"})
    set_session_cookie(answer, request, new)
    return answer
