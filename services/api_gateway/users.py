"""The gateway's user-lifecycle, self-service API-key and audit endpoints (admin and self)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from services.api_gateway.accounts import IdentityUser
from services.api_gateway.deps import CurrentPrincipal, RuntimeDep, admin_principal
from services.api_gateway.errors import Forbidden, UpstreamUnavailable
from services.api_gateway.principal import AuthMethod
from services.api_gateway.runtime import Runtime
from services.api_gateway.schemas import (
    ApiKeyIssued,
    AuditPage,
    CreateUserRequest,
    IssuedPasswordResponse,
    MyApiKey,
    RolesUpdate,
    UserOut,
    UserResponse,
    UsersResponse,
)
from shared.errors import error_responses

AUDIT_PAGE_MAX = 500

admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_principal)])
auth = APIRouter(prefix="/auth", tags=["auth"])


# Every endpoint here may answer these: no or a bad credential, not allowed, and the identity
# service down, failing or too slow. `_errors` adds what an endpoint answers besides.
_ALWAYS = (401, 403, 502, 503, 504)


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return error_responses(*sorted({*_ALWAYS, *statuses}))


def _user(user: IdentityUser) -> UserOut:
    return UserOut.model_validate(user, from_attributes=True)


async def _access_ended(runtime: Runtime, user: IdentityUser) -> UserResponse:
    # Tokens and cached API keys from before the change stop here at once.
    await runtime.authenticator.end_access(user)
    return UserResponse(user=_user(user))


def _issued_key(user: IdentityUser, api_key: str, stored_at: str | None) -> ApiKeyIssued:
    return ApiKeyIssued(
        username=user.username,
        key_id=user.api_key_id or "",
        api_key=api_key,
        created_at=user.api_key_last_rotated_at,
        stored_in_managed_store=stored_at is not None,
    )


async def _rotate_key(runtime: Runtime, username: str) -> ApiKeyIssued:
    user, api_key, stored_at = await runtime.identity.rotate_api_key(username)
    await runtime.authenticator.key_rotated(user)
    return _issued_key(user, api_key, stored_at)


@admin.get(
    "/users",
    response_model=UsersResponse,
    summary="Every user of the identity store",
    responses=_errors(),
)
async def list_users(runtime: RuntimeDep) -> UsersResponse:
    """List users through the identity service."""
    return UsersResponse(users=[_user(user) for user in await runtime.identity.list_users()])


@admin.post(
    "/users/{username}/deactivate",
    response_model=UserResponse,
    summary="Deactivate a user",
    responses=_errors(404, 409),
)
async def deactivate_user(username: str, runtime: RuntimeDep) -> UserResponse:
    """Deactivate a user; their tokens and API key stop working here at once. `409
    conflict`: the last active admin, or a deleted account."""
    return await _access_ended(runtime, await runtime.identity.deactivate_user(username))


@admin.put(
    "/users/{username}/roles",
    response_model=UserResponse,
    summary="Replace a user's roles",
    responses=_errors(404, 409, 413, 422),
)
async def set_roles(username: str, body: RolesUpdate, runtime: RuntimeDep) -> UserResponse:
    """Replace a user's roles; tokens carrying the old roles stop working at once. `409
    conflict`: it would take the admin role from the last active admin."""
    return await _access_ended(runtime, await runtime.identity.set_roles(username, body.roles))


@admin.post(
    "/users",
    status_code=201,
    response_model=IssuedPasswordResponse,
    summary="Create a user",
    responses=_errors(409, 413, 422),
)
async def create_user(body: CreateUserRequest, runtime: RuntimeDep) -> IssuedPasswordResponse:
    """Create a user with at least one role. Without `password` a one-time password is
    generated and returned this once; either way the user must set their own password at
    first sign-in. `409 conflict`: the name is taken (compared case- and NFKC-insensitively,
    deleted accounts included); `422 weak_password`: the password policy's rule that failed;
    `422 validation_error`: the field that is wrong."""
    password = body.password.get_secret_value() if body.password is not None else None
    user, one_time = await runtime.identity.create_user(body.username, body.roles, password)
    return IssuedPasswordResponse(user=_user(user), one_time_password=one_time)


@admin.post(
    "/users/{username}/reactivate",
    response_model=UserResponse,
    summary="Reactivate a user",
    responses=_errors(404, 409),
)
async def reactivate_user(username: str, runtime: RuntimeDep) -> UserResponse:
    """Let a deactivated user sign in again; tokens from before the deactivation stay
    ended. `409 conflict`: the account is deleted."""
    return await _access_ended(runtime, await runtime.identity.reactivate_user(username))


@admin.delete(
    "/users/{username}",
    response_model=UserResponse,
    summary="Delete a user (soft)",
    responses=_errors(404, 409),
)
async def delete_user(username: str, runtime: RuntimeDep) -> UserResponse:
    """Delete an account: it never signs in again, its tokens and API key stop at once, its
    name stays reserved and its history stays in the audit trail. `409 conflict`: it is
    the last active admin, or already deleted."""
    return await _access_ended(runtime, await runtime.identity.delete_user(username))


@admin.post(
    "/users/{username}/password/reset",
    response_model=IssuedPasswordResponse,
    summary="Reset a user's password",
    responses=_errors(404, 409),
)
async def reset_password(username: str, runtime: RuntimeDep) -> IssuedPasswordResponse:
    """Set a one-time password, returned this once, to change at the next sign-in; every
    token and session of the user ends at once. `409 conflict`: the account is deleted."""
    user, password = await runtime.identity.reset_password(username)
    await runtime.authenticator.end_access(user)
    return IssuedPasswordResponse(user=_user(user), one_time_password=password)


@admin.post(
    "/users/{username}/api-key",
    response_model=ApiKeyIssued,
    summary="Rotate a user's API key",
    responses=_errors(404, 409),
)
async def rotate_user_api_key(username: str, runtime: RuntimeDep) -> ApiKeyIssued:
    """Give a user a new random API key, returned this once with its key id; the previous
    key stops at once on every gateway replica. With Vault or AWS Secrets Manager
    configured the key is written back there as `rotate_api_key` does. `409 conflict`:
    the account is deleted."""
    return await _rotate_key(runtime, username)


@auth.get(
    "/api-key",
    response_model=MyApiKey,
    summary="My API key (never the key itself)",
    responses=_errors(),
)
async def my_api_key(principal: CurrentPrincipal, runtime: RuntimeDep) -> MyApiKey:
    """Return the caller's key id, when it was created and first used, and the last use
    the gateway counted."""
    user = await runtime.identity.get_user(principal.username)
    usage = None
    if user.api_key_id is not None:
        usage = next(
            (u for u in await runtime.state.api_key_usage() if u.key_id == user.api_key_id),
            None,
        )
    return MyApiKey(
        username=user.username,
        key_id=user.api_key_id,
        created_at=user.api_key_last_rotated_at,
        first_used_at=user.api_key_first_used_at,
        last_used_at=datetime.fromtimestamp(usage.last_used_at, UTC) if usage else None,
        last_client=usage.last_client if usage else None,
    )


@auth.post(
    "/api-key",
    response_model=ApiKeyIssued,
    summary="Rotate my API key",
    responses=_errors(409),
)
async def rotate_my_api_key(principal: CurrentPrincipal, runtime: RuntimeDep) -> ApiKeyIssued:
    """Give the caller a new API key, returned this once; the previous one stops at once.
    Needs a password sign-in (a bearer token): `403 forbidden` for an API key, so a leaked
    key cannot replace itself."""
    if principal.auth_method is not AuthMethod.PASSWORD:
        raise Forbidden("sign in with your password to rotate your API key")
    return await _rotate_key(runtime, principal.username)


@admin.get(
    "/audit",
    response_model=AuditPage,
    summary="Security events, newest first",
    responses=_errors(422),
)
async def audit_events(
    runtime: RuntimeDep,
    since: Annotated[
        datetime | None, Query(description="Only events at or after this time (ISO 8601)")
    ] = None,
    user: Annotated[
        str | None, Query(max_length=256, description="Only events by or about this user")
    ] = None,
    type: Annotated[
        str | None, Query(max_length=64, description="Only this event type, e.g. login.failed")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=256, description="`next_cursor` of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_PAGE_MAX)] = 100,
) -> AuditPage:
    """Read the identity service's audit trail: logins, password and API-key changes,
    user lifecycle and role changes, token revocations. `422 validation_error` names a bad
    filter or cursor."""
    query = {"limit": str(limit)}
    for name, value in (("user", user), ("type", type), ("cursor", cursor)):
        if value is not None:
            query[name] = value
    if since is not None:
        query["since"] = since.isoformat()
    body = await runtime.identity.audit_events(query)
    try:
        return AuditPage.model_validate(body)
    except ValueError:
        raise UpstreamUnavailable(
            "the identity service answered an audit page the gateway cannot read"
        ) from None


routers = (auth, admin)
