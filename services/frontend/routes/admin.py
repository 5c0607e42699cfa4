"""Admin pages: the users audit snapshot, deactivation, roles, API key usage.

The menu shows these only to admins; the gateway refuses everyone else anyway, and its
403 is what a non-admin sees here.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from services.frontend.deps import FormSession, GatewayDep, PageSession, StoreDep
from services.frontend.errors import PageNotFoundError
from services.frontend.gateway import Gateway
from services.frontend.pages import redirect, render
from services.frontend.sessions import Session
from shared.roles import ROLES

router = APIRouter()


async def find_user(gateway: Gateway, session: Session, username: str) -> dict[str, Any]:
    """Return one user of the audit snapshot, or a 404 page."""
    for user in await gateway.users(session.bearer()):
        if user.get("username") == username:
            return user
    raise PageNotFoundError(f"there is no user named {username!r}")


def usage_rows(body: Any) -> list[dict[str, Any]]:
    """Flatten the gateway's API key usage into one row per key id."""
    if isinstance(body, dict):
        listed = next((v for k, v in body.items() if k in {"keys", "usage", "api_keys"}), None)
        if isinstance(listed, list):
            body = listed
        elif isinstance(listed, dict):
            body = [{"key_id": key, **entry} for key, entry in listed.items()]
        else:
            body = [
                {"key_id": key, **entry} for key, entry in body.items() if isinstance(entry, dict)
            ]
    rows = [row for row in body if isinstance(row, dict)] if isinstance(body, list) else []
    return sorted(rows, key=lambda row: str(row.get("key_id", "")))


@router.get("/users")
async def users_page(request: Request, gateway: GatewayDep, session: PageSession) -> Response:
    """Show every user: roles, active, last login, password age and expiry, API key rotation."""
    users = await gateway.users(session.bearer())
    users.sort(key=lambda user: str(user.get("username", "")))
    return await render(request, "admin_users.html", session=session, users=users)


@router.get("/users/{username}/deactivate")
async def deactivate_confirm(
    request: Request, username: str, gateway: GatewayDep, session: PageSession
) -> Response:
    """Ask the admin to confirm a deactivation."""
    user = await find_user(gateway, session, username)
    return await render(request, "admin_deactivate.html", session=session, user=user)


@router.post("/users/{username}/deactivate")
async def deactivate(
    username: str, store: StoreDep, gateway: GatewayDep, session: FormSession
) -> Response:
    """Deactivate a user at the gateway."""
    await gateway.deactivate_user(session.bearer(), username)
    session.flash = f"User {username} was deactivated."
    await store.save(session)
    return redirect("/admin/users")


@router.get("/users/{username}/roles")
async def roles_form(
    request: Request, username: str, gateway: GatewayDep, session: PageSession
) -> Response:
    """Show a user's roles as checkboxes."""
    user = await find_user(gateway, session, username)
    return await render(
        request, "admin_roles.html", session=session, user=user, all_roles=ROLES, confirm=False
    )


@router.post("/users/{username}/roles")
async def change_roles(
    request: Request,
    username: str,
    store: StoreDep,
    gateway: GatewayDep,
    session: FormSession,
    roles: Annotated[list[str], Form()] = [],  # noqa: B006 - FastAPI copies form defaults
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """First show old and new roles for confirmation, then change them at the gateway."""
    if confirm != "yes":
        user = await find_user(gateway, session, username)
        return await render(
            request,
            "admin_roles.html",
            session=session,
            user=user,
            all_roles=ROLES,
            new_roles=roles,
            confirm=True,
        )
    user = await gateway.set_roles(session.bearer(), username, roles)
    shown = ", ".join(user.get("roles", roles)) or "no roles"
    session.flash = f"User {username} now has: {shown}."
    await store.save(session)
    return redirect("/admin/users")


@router.get("/api-keys")
async def api_keys_page(request: Request, gateway: GatewayDep, session: PageSession) -> Response:
    """Show the gateway's API key usage."""
    usage = await gateway.api_key_usage(session.bearer())
    return await render(
        request, "admin_api_keys.html", session=session, rows=usage_rows(usage), raw=usage
    )
