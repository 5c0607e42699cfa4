"""Admin user lifecycle: create, reset a password, rotate an API key, reactivate, delete.

Each action on an existing user is a confirmation page (GET) and a CSRF-protected form
(POST). A one-time password or a new API key is shown once, on the page the POST answers
with: it is never stored in the session or put in a URL, and pages are `no-store`.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.frontend.deps import FormSession, GatewayDep, PageSession, StoreDep
from services.frontend.errors import GatewayError, PageNotFoundError
from services.frontend.pages import redirect, render
from services.frontend.routes.admin import find_user
from shared.roles import ROLES

router = APIRouter()

FormText = Annotated[str, Form()]


# What each action is called on its confirmation page, and what it does to the user.
ACTIONS: dict[str, tuple[str, str]] = {
    "reset-password": (
        "Reset the password of",
        "gets a new one-time password, shown to you once; all their sessions and tokens end, "
        "and they must choose their own password at their next sign-in.",
    ),
    "rotate-api-key": (
        "Rotate the API key of",
        "gets a new API key, shown to you once; the current key stops working at once.",
    ),
    "reset-mfa": (
        "Reset the second factors of",
        "loses every second factor and recovery code; all their sessions and tokens end, and "
        "they must enrol a new factor at their next sign-in if their role requires one.",
    ),
    "reactivate": ("Reactivate", "can sign in and use their API key again."),
    "delete": (
        "Delete",
        "can never sign in again. The name stays reserved and their history stays in the "
        "audit trail. This cannot be undone.",
    ),
}


def action_of(action: str) -> tuple[str, str]:
    """Return the wording of a known action, or a 404 page."""
    if action not in ACTIONS:
        raise PageNotFoundError(f"there is no user action named {action!r}")
    return ACTIONS[action]


@router.get("/users/new")
async def create_form(request: Request, session: PageSession) -> Response:
    """Show the form for a new user: username, roles, an optional password."""
    return await render(
        request, "admin_user_new.html", session=session, all_roles=ROLES, roles=[], username=""
    )


@router.post("/users/new")
async def create_user(
    request: Request,
    gateway: GatewayDep,
    session: FormSession,
    username: FormText = "",
    password: FormText = "",
    roles: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
) -> Response:
    """Create the user at the gateway and show the one-time password once."""
    form: dict[str, Any] = {"all_roles": ROLES, "roles": roles, "username": username.strip()}
    error = None
    if not form["username"]:
        error = "Enter a username."
    elif not roles:
        error = "Choose at least one role."
    if error is None:
        try:
            created = await gateway.create_user(
                session.bearer(), form["username"], roles, password or None
            )
        except GatewayError as exc:
            if exc.status not in (409, 422):
                raise
            error = exc.message[:1].upper() + exc.message[1:]
            return await render(
                request,
                "admin_user_new.html",
                session=session,
                status_code=exc.status,
                error=error,
                **form,
            )
        user = created.get("user", {})
        return await render(
            request,
            "admin_secret.html",
            session=session,
            title=f"User {user.get('username', form['username'])} was created",
            label="One-time password",
            secret=created.get("one_time_password"),
            note="They must choose their own password at their first sign-in.",
        )
    return await render(
        request, "admin_user_new.html", session=session, status_code=400, error=error, **form
    )


@router.get("/users/{username}/{action}")
async def confirm(
    request: Request, username: str, action: str, gateway: GatewayDep, session: PageSession
) -> Response:
    """Ask the admin to confirm an action on a user."""
    verb, effect = action_of(action)
    user = await find_user(gateway, session, username)
    return await render(
        request,
        "admin_confirm.html",
        session=session,
        user=user,
        action=action,
        verb=verb,
        effect=effect,
    )


@router.post("/users/{username}/{action}")
async def act(
    request: Request,
    username: str,
    action: str,
    store: StoreDep,
    gateway: GatewayDep,
    session: FormSession,
) -> Response:
    """Do the confirmed action; a new password or key is shown this once."""
    action_of(action)
    body = await gateway.user_action(session.bearer(), username, action)
    if action == "reset-password":
        return await render(
            request,
            "admin_secret.html",
            session=session,
            title=f"The password of {username} was reset",
            label="One-time password",
            secret=body.get("one_time_password"),
            note="Their sessions ended; they must choose their own password at next sign-in.",
        )
    if action == "rotate-api-key":
        return await render(
            request,
            "admin_secret.html",
            session=session,
            title=f"The API key of {username} was rotated",
            label=f"API key (key id {body.get('key_id', '?')})",
            secret=body.get("api_key"),
            note="The previous key no longer works.",
        )
    done = {"delete": "deleted", "reset-mfa": "reset: their second factors are removed"}
    session.flash = f"User {username} was {done.get(action, 'reactivated')}."
    await store.save(session)
    return redirect("/admin/users")
