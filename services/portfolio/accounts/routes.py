"""The internal identity API the gateway calls (`/internal/identity/*`, X-Service-Token)."""

from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.openapi.utils import get_openapi

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts import gateway_state
from services.portfolio.accounts.deps import AuditDep, IdentityDep, ServiceTokenRoute
from services.portfolio.accounts.schemas import (
    AccessChangesOut,
    ApiKeyIn,
    ApiKeyIssuedOut,
    ApiKeyVerified,
    AuditPageOut,
    Credentials,
    EnrolConfirmIn,
    EnrolStartIn,
    FactorsOut,
    IssuedPasswordOut,
    KeyUsageIn,
    KeyUsageOut,
    NewUserIn,
    PasskeyLoginIn,
    PasskeyOptions,
    PasskeyOptionsIn,
    PasskeyRegistered,
    PasskeyRegisterIn,
    PasswordRotationIn,
    Recorded,
    RevocationIn,
    RevocationsOut,
    RolesIn,
    SecondStepIn,
    ThrottledIn,
    TotpConfirmed,
    TotpEnrolment,
    UserOut,
    UsersOut,
)
from services.portfolio.errors import InvalidInputError
from shared.errors import error_responses
from shared.usernames import USERNAME_RULE, InvalidUsernameError, normalize_username

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
async def authenticate(body: Credentials, identity: IdentityDep, audit: AuditDep) -> UserOut:
    """Check a username and password; `401 mfa_required` with a challenge when a second
    factor is due (or, `enrolment_required`, must first be enrolled)."""
    return UserOut(user=await identity.login(body.username, body.password, audit=audit))


@router.post("/mfa/verify")
async def verify_second_step(body: SecondStepIn, identity: IdentityDep, audit: AuditDep) -> UserOut:
    """Answer a login challenge with a TOTP code, a recovery code or a passkey assertion."""
    if body.passkey is not None:
        if body.code is not None or body.recovery_code is not None:
            raise InvalidInputError("give one of code, recovery_code or passkey")
        return UserOut(
            user=await identity.verify_passkey(body.challenge, body.passkey, audit=audit)
        )
    user = await identity.verify_second_step(
        body.challenge, code=body.code, recovery_code=body.recovery_code, audit=audit
    )
    return UserOut(user=user)


@router.post("/mfa/passkey/register/options")
async def passkey_registration_options(
    body: PasskeyOptionsIn, identity: IdentityDep
) -> PasskeyOptions:
    """Start a passkey registration (the signed-in user, or an enrolment challenge's owner)."""
    name = await identity.enrolling_user(username=body.username, challenge=body.challenge)
    return await identity.passkey_registration_options(name)


@router.post("/mfa/passkey/register")
async def register_passkey(
    body: PasskeyRegisterIn, identity: IdentityDep, audit: AuditDep
) -> PasskeyRegistered:
    """Verify a passkey registration and keep the passkey."""
    name = await identity.enrolling_user(username=body.username, challenge=body.challenge)
    return await identity.register_passkey(
        name, body.handle, body.credential, label=body.label, challenge=body.challenge, audit=audit
    )


@router.post("/mfa/passkey/options")
async def passkey_login_options(body: PasskeyLoginIn, identity: IdentityDep) -> dict[str, Any]:
    """Return the options of a passkey sign-in answering a login challenge."""
    return {"options": await identity.passkey_login_options(body.challenge)}


@router.get("/users/{username}/mfa")
async def list_factors(username: str, identity: IdentityDep) -> FactorsOut:
    """List a user's second factors."""
    return await identity.list_factors(username)


@router.post("/mfa/totp")
async def start_totp(body: EnrolStartIn, identity: IdentityDep) -> TotpEnrolment:
    """Start a TOTP enrolment for a user, or for the owner of an enrolment challenge."""
    name = await identity.enrolling_user(username=body.username, challenge=body.challenge)
    return await identity.start_totp(name, label=body.label)


@router.post("/mfa/totp/confirm")
async def confirm_totp(
    body: EnrolConfirmIn, identity: IdentityDep, audit: AuditDep
) -> TotpConfirmed:
    """Confirm a TOTP enrolment with its first code; recovery codes come back this once."""
    name = await identity.enrolling_user(username=body.username, challenge=body.challenge)
    return await identity.confirm_totp(
        name, body.factor_id, body.code, challenge=body.challenge, audit=audit
    )


@router.delete("/users/{username}/mfa/{factor_id}")
async def remove_factor(
    username: str,
    factor_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    identity: IdentityDep,
    audit: AuditDep,
) -> FactorsOut:
    """Remove a factor; `409 conflict` for the last one of an account that requires one."""
    return await identity.remove_factor(username, factor_id, audit=audit)


@router.post("/users/{username}/mfa/reset")
async def reset_mfa(username: str, identity: IdentityDep, audit: AuditDep) -> UserOut:
    """Remove every factor of a user (an admin's reset); their live access ends."""
    return UserOut(user=await identity.reset_mfa(username, audit=audit))


@router.post("/api-keys/verify")
async def verify_api_key(body: ApiKeyIn, identity: IdentityDep, audit: AuditDep) -> ApiKeyVerified:
    """Return the user holding an API key."""
    user = await identity.verify_api_key(body.api_key, audit=audit)
    return ApiKeyVerified(user=user, key_id=user.api_key_id or "")


@router.post("/password/rotate")
async def rotate_password(
    body: PasswordRotationIn, identity: IdentityDep, audit: AuditDep
) -> UserOut:
    """Replace a password, given the current one (also when it has expired)."""
    user = await identity.rotate_password(
        body.username, body.current_password, body.new_password, audit=audit
    )
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
async def deactivate_user(username: str, identity: IdentityDep, audit: AuditDep) -> UserOut:
    """Deactivate a user."""
    return UserOut(user=await identity.deactivate_user(username, audit=audit))


@router.put("/users/{username}/roles")
async def set_roles(
    username: str, body: RolesIn, identity: IdentityDep, audit: AuditDep
) -> UserOut:
    """Replace a user's roles."""
    return UserOut(user=await identity.set_roles(username, body.roles, audit=audit))


@router.post("/users", status_code=201)
async def create_user(body: NewUserIn, identity: IdentityDep, audit: AuditDep) -> IssuedPasswordOut:
    """Create a user who must change the password at first sign-in; without a password
    a one-time password is generated and returned this once."""
    issued = await identity.create_account(body.username, body.roles, body.password, audit=audit)
    return IssuedPasswordOut(user=issued.user, one_time_password=issued.one_time_password)


@router.post("/users/{username}/reactivate")
async def reactivate_user(username: str, identity: IdentityDep, audit: AuditDep) -> UserOut:
    """Let a deactivated user sign in again."""
    return UserOut(user=await identity.reactivate_user(username, audit=audit))


@router.delete("/users/{username}")
async def delete_user(username: str, identity: IdentityDep, audit: AuditDep) -> UserOut:
    """Delete a user softly: never signs in again; the name stays reserved."""
    return UserOut(user=await identity.delete_user(username, audit=audit))


@router.post("/users/{username}/password/reset")
async def reset_password(
    username: str, identity: IdentityDep, audit: AuditDep
) -> IssuedPasswordOut:
    """Set a one-time password (returned this once); the user's tokens end."""
    issued = await identity.reset_password(username, audit=audit)
    return IssuedPasswordOut(user=issued.user, one_time_password=issued.one_time_password)


@router.post("/users/{username}/api-key")
async def rotate_api_key(username: str, identity: IdentityDep, audit: AuditDep) -> ApiKeyIssuedOut:
    """Give a user a new random API key, written back to the managed store if there is
    one; the clear key is returned this once and the previous one stops at once."""
    rotation = await identity.rotate_api_key(username, audit=audit, generate=True)
    return ApiKeyIssuedOut(
        user=rotation.user,
        key_id=rotation.user.api_key_id or "",
        api_key=rotation.api_key,
        stored_at=rotation.stored_at,
    )


@router.post("/audit/login-throttled")
async def login_throttled(body: ThrottledIn, identity: IdentityDep, audit: AuditDep) -> Recorded:
    """Audit a login the gateway refused by its own throttle (`login.throttled`)."""
    await identity.record_gateway_throttle(body.username, audit=audit)
    return Recorded()


@router.post("/tokens/revoked")
async def revoke_token(body: RevocationIn, identity: IdentityDep, audit: AuditDep) -> Recorded:
    """Keep a gateway logout's revocation across gateway restarts; audited `token.revoked`."""
    await gateway_state.revoke_token(
        identity.database,
        audit,
        jti=body.jti,
        username=body.username,
        expires_at=body.expires_at,
        now=identity.now(),
    )
    return Recorded()


@router.get("/tokens/revoked")
async def revoked_tokens(identity: IdentityDep) -> RevocationsOut:
    """List the revocations still in force (a gateway reads them when it starts)."""
    revoked = await gateway_state.live_revocations(identity.database, now=identity.now())
    return RevocationsOut(revoked=revoked)


@router.post("/api-keys/usage")
async def add_api_key_usage(body: KeyUsageIn, identity: IdentityDep) -> Recorded:
    """Add a gateway's API-key usage counts since its last flush to the totals."""
    await gateway_state.add_usage(identity.database, body.keys)
    return Recorded()


@router.get("/api-keys/usage")
async def api_key_usage(identity: IdentityDep) -> KeyUsageOut:
    """Return the API-key usage totals."""
    return KeyUsageOut(keys=await gateway_state.usage_totals(identity.database))


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


AUDIT_PAGE_MAX = 500


@router.get("/audit")
async def audit_events(
    identity: IdentityDep,
    since: datetime | None = None,
    user: Annotated[str | None, Query(max_length=256)] = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=AUDIT_PAGE_MAX)] = 100,
) -> AuditPageOut:
    """List security events newest first; pass `next_cursor` back as `cursor` for more."""
    query = audit_log.AuditQuery(
        since=_since(since),
        user=_canonical_or_none(user),
        event_type=audit_log.parse_event_type(type),
    )
    return await audit_log.read_page(identity.database, query, cursor=cursor, limit=limit)


def _since(since: datetime | None) -> datetime | None:
    if since is None:
        return None
    # A time without an offset is taken as UTC, like every time this API returns.
    try:
        return (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
    except OverflowError:
        raise InvalidInputError("since: the time is out of range") from None


def _canonical_or_none(user: str | None) -> str | None:
    if user is None:
        return None
    try:
        return normalize_username(user)
    except InvalidUsernameError:
        raise InvalidInputError(f"user: the username must be {USERNAME_RULE}") from None


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
