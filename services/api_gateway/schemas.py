"""Request and response bodies of the gateway's own endpoints (auth, admin, health)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, StringConstraints, field_validator

from shared.roles import parse_roles

Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=150)]
Password = Annotated[SecretStr, Field(min_length=1, max_length=1024)]


class TokenRequest(BaseModel):
    """Credentials for `POST /auth/token` (JSON or OAuth2 password form)."""

    username: Username
    password: Password
    grant_type: Literal["password"] | None = None


class TokenResponse(BaseModel):
    """An issued access token."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    expires_at: datetime
    roles: list[str]


class MeResponse(BaseModel):
    """The caller as the gateway sees them."""

    username: str
    roles: list[str]
    services: list[str]
    auth_method: Literal["password", "api_key"]
    expires_at: datetime | None = Field(
        description="When the bearer token expires; null for API keys"
    )
    key_id: str | None = Field(default=None, description="The API key id, for API-key callers")


class PasswordRotateRequest(BaseModel):
    """Replace a password; works when the current one has expired."""

    username: Username
    current_password: Password
    new_password: Password


class PasswordRotateResponse(BaseModel):
    """The account after a password rotation."""

    username: str
    password_changed_at: datetime | None = None
    password_expires_at: datetime | None = None


class UserOut(BaseModel):
    """A user of the identity store (never a password or key hash)."""

    username: str
    roles: list[str]
    is_active: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_login_at: datetime | None = None
    password_changed_at: datetime | None = None
    password_expires_at: datetime | None = None
    api_key_id: str | None = None
    api_key_last_rotated_at: datetime | None = None
    must_change_password: bool = False
    deleted_at: datetime | None = Field(
        default=None, description="Set once the account is deleted; its name stays reserved"
    )
    api_key_first_used_at: datetime | None = None


class UserResponse(BaseModel):
    """One user."""

    user: UserOut


class UsersResponse(BaseModel):
    """Every user."""

    users: list[UserOut]


class RolesUpdate(BaseModel):
    """The complete new role list of a user."""

    roles: list[str]

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        return [role.value for role in parse_roles(value)]


class ApiKeyUsageOut(BaseModel):
    """Usage totals of one API key (by key id, never the key); they outlast gateway restarts."""

    key_id: str
    username: str
    requests: int
    services: dict[str, int]
    status_classes: dict[str, int]
    first_used_at: datetime | None = Field(description="Null for a key never used")
    last_used_at: datetime | None = Field(description="Null for a key never used")
    last_client: str | None


class ApiKeyUsageResponse(BaseModel):
    """API-key usage, most recently used first."""

    keys: list[ApiKeyUsageOut]


class StateHealth(BaseModel):
    """The shared-state backend (only shown when it is Redis) and whether it answers."""

    backend: str
    available: bool
    detail: str


class CheckOut(BaseModel):
    """One dependency in a readiness answer."""

    status: Literal["up", "down"]
    required: bool = Field(description="Down makes the gateway unready (503)")
    detail: str


class Health(BaseModel):
    """A liveness or readiness answer; `degraded`: ready, but Redis or a downstream is down."""

    status: Literal["ok", "ready", "degraded"]
    degraded: list[str] | None = Field(
        default=None, description="The dependencies that are down, the gateway serving on"
    )
    checks: dict[str, CheckOut] | None = Field(
        default=None, description="Each dependency: identity, redis, every downstream service"
    )
    state: StateHealth | None = Field(
        default=None, description="The Redis state backend's condition; absent in memory"
    )


class Jwk(BaseModel):
    """A public signing key."""

    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class Jwks(BaseModel):
    """The keys that verify the gateway's access tokens, current first."""

    keys: list[Jwk]


class AuditEventOut(BaseModel):
    """One security event; never a password, key or token."""

    id: int
    time: datetime
    type: str = Field(description="e.g. login.failed, user.created, api_key.rotated")
    actor: str | None = Field(description="Who acted; null for the system or the CLI")
    subject: str | None = Field(description="Whom it concerned")
    client_address: str | None
    request_id: str | None
    outcome: Literal["success", "failure"]
    detail: dict[str, Any] | None = None


class AuditPage(BaseModel):
    """Events newest first; pass `next_cursor` back as `cursor` for the next page."""

    events: list[AuditEventOut]
    next_cursor: str | None = None


class CreateUserRequest(BaseModel):
    """A new user: at least one role; no password makes a one-time password."""

    username: Username
    roles: Annotated[list[str], Field(min_length=1, max_length=16)]
    password: Password | None = Field(
        default=None,
        description="Omit to have a one-time password generated and returned once",
    )

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        return [role.value for role in parse_roles(value)]


class IssuedPasswordResponse(BaseModel):
    """The user, and the one-time password shown this once (null: the admin chose it)."""

    user: UserOut
    one_time_password: str | None = None


class ApiKeyIssued(BaseModel):
    """A new API key: the clear key is shown this once and never again."""

    username: str
    key_id: str
    api_key: str
    created_at: datetime | None
    stored_in_managed_store: bool = Field(
        description="True when the key was also written back to Vault or AWS Secrets Manager"
    )


class MyApiKey(BaseModel):
    """The caller's own API key, never the key itself."""

    username: str
    key_id: str | None = Field(description="Null when the user has no API key")
    created_at: datetime | None
    first_used_at: datetime | None
    last_used_at: datetime | None = Field(
        description="Last use seen by the gateway (null: not used since the counts began)"
    )
    last_client: str | None = None


Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Challenge = Annotated[str, StringConstraints(min_length=16, max_length=128)]
# A row id of the identity store (a 32-bit integer column).
FactorId = Annotated[int, Field(ge=1, le=2**31 - 1)]


class SecondStepRequest(BaseModel):
    """The second step of `POST /auth/token`: the challenge of the `mfa_required` answer and
    a TOTP code or a recovery code."""

    challenge: Challenge
    code: Code | None = None
    recovery_code: Code | None = None
    # A passkey assertion: the credential `navigator.credentials.get` returned, as JSON
    # (options from `POST /auth/mfa/passkey/options`).
    passkey: dict[str, Any] | None = None


class MfaChallengeError(BaseModel):
    """The `error` of a `401 mfa_required` answer."""

    code: Literal["mfa_required"]
    message: str
    # Send it back with the second step (or, `enrolment_required`, with the enrolment).
    challenge: str
    # What answers it: `totp`, `recovery_code`, `passkey` (enrolment: what may be enrolled).
    methods: list[str]
    expires_in: int
    # True: the account must enrol a factor first and may do nothing else.
    enrolment_required: bool


class MfaChallengeBody(BaseModel):
    """`{"error": {"code": "mfa_required", "challenge", "methods", "expires_in", ...}}`."""

    error: MfaChallengeError


class FactorOut(BaseModel):
    """One enrolled second factor (never its secret)."""

    id: int
    kind: str
    label: str
    created_at: datetime
    last_used_at: datetime | None = None


class FactorsResponse(BaseModel):
    """The caller's second factors."""

    factors: list[FactorOut]
    recovery_codes_left: int
    # True when the caller's roles require a second factor (the last one cannot be removed).
    required: bool


class TotpStartRequest(BaseModel):
    """Start a TOTP enrolment: as the signed-in user (bearer), or with the enrolment
    challenge of a `mfa_required` answer."""

    challenge: Challenge | None = None
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = (
        "Authenticator app"
    )


class TotpEnrolmentResponse(BaseModel):
    """The secret (shown this once) and its `otpauth://` URI for the authenticator app."""

    factor_id: int
    secret: str
    otpauth_uri: str


class TotpConfirmRequest(BaseModel):
    """Confirm a TOTP enrolment with the first code the app shows."""

    factor_id: FactorId
    code: Code
    challenge: Challenge | None = None


class TotpConfirmResponse(BaseModel):
    """Recovery codes, shown this once (empty: the earlier ones still stand); after an
    enrolment-only challenge, the access token of the sign-in it completes."""

    factor_id: int
    recovery_codes: list[str]
    token: TokenResponse | None = None


class PasskeyOptionsRequest(BaseModel):
    """Start a passkey registration: as the signed-in user (bearer), or with the enrolment
    challenge of a `mfa_required` answer."""

    challenge: Challenge | None = None


class PasskeyOptionsResponse(BaseModel):
    """The handle of the ceremony and its options for `navigator.credentials.create`."""

    handle: str
    options: dict[str, Any]


class PasskeyRegisterRequest(BaseModel):
    """The credential `navigator.credentials.create` returned, as JSON."""

    handle: Challenge
    credential: dict[str, Any]
    challenge: Challenge | None = None
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = (
        "Passkey"
    )


class PasskeyLoginOptionsRequest(BaseModel):
    """A login challenge to answer with a passkey."""

    challenge: Challenge


class PasskeyLoginOptionsResponse(BaseModel):
    """Options for `navigator.credentials.get`."""

    options: dict[str, Any]
