"""The internal identity API the gateway calls (`/internal/identity/*`, X-Service-Token)."""

from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.openapi.utils import get_openapi

from services.portfolio.accounts.deps import IdentityDep, ServiceTokenRoute
from services.portfolio.accounts.schemas import (
    AccessChangesOut,
    ApiKeyIn,
    ApiKeyVerified,
    Credentials,
    PasswordRotationIn,
    RolesIn,
    UserOut,
    UsersOut,
)
from shared.errors import error_responses

router = APIRouter(
    prefix="/internal/identity",
    tags=["identity"],
    route_class=ServiceTokenRoute,
    responses=error_responses(401, 403, 404, 409, 422, 429, 503),
)

CHANGES_PAGE_MAX = 1000
# A reader replays at most a day of changes when it starts (tokens live far less).
CHANGES_WINDOW_MAX = 24 * 3600.0


@router.post("/authenticate")
async def authenticate(body: Credentials, identity: IdentityDep) -> UserOut:
    """Check a username and password."""
    return UserOut(user=await identity.authenticate(body.username, body.password))


@router.post("/api-keys/verify")
async def verify_api_key(body: ApiKeyIn, identity: IdentityDep) -> ApiKeyVerified:
    """Return the user holding an API key."""
    user = await identity.verify_api_key(body.api_key)
    return ApiKeyVerified(user=user, key_id=user.api_key_id or "")


@router.post("/password/rotate")
async def rotate_password(body: PasswordRotationIn, identity: IdentityDep) -> UserOut:
    """Replace a password, given the current one (also when it has expired)."""
    user = await identity.rotate_password(body.username, body.current_password, body.new_password)
    return UserOut(user=user)


@router.get("/users")
async def list_users(identity: IdentityDep) -> UsersOut:
    """List every user."""
    return UsersOut(users=await identity.list_users())


@router.get("/users/{username}")
async def get_user(username: str, identity: IdentityDep) -> UserOut:
    """Return one user."""
    return UserOut(user=await identity.get_user(username))


@router.post("/users/{username}/deactivate")
async def deactivate_user(username: str, identity: IdentityDep) -> UserOut:
    """Deactivate a user."""
    return UserOut(user=await identity.deactivate_user(username))


@router.put("/users/{username}/roles")
async def set_roles(username: str, body: RolesIn, identity: IdentityDep) -> UserOut:
    """Replace a user's roles."""
    return UserOut(user=await identity.set_roles(username, body.roles))


@router.get("/changes")
async def access_changes(
    identity: IdentityDep,
    after: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=CHANGES_PAGE_MAX)] = 500,
    window: Annotated[float | None, Query(ge=0, le=CHANGES_WINDOW_MAX)] = None,
) -> AccessChangesOut:
    """List the changes that ended live access after the cursor `after`, in commit order;
    without it, where a new reader starts (`window`: that many seconds back)."""
    return await identity.access_changes(after, limit=limit, window_seconds=window)


@router.get("/openapi.json", include_in_schema=False)
async def openapi() -> dict[str, Any]:
    """Return the OpenAPI document of this internal API (never part of `/openapi.json`)."""
    return _document()


@cache
def _document() -> dict[str, Any]:
    return get_openapi(
        title="LegacyCoinTrader identity service (internal)",
        version="1.0.0",
        summary="Called by the gateway with X-Service-Token; never reachable through it.",
        routes=router.routes,
    )
