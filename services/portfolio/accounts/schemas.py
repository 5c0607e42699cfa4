"""What the identity store hands out and what its internal API accepts."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Generous caps on request fields so a request cannot make the service hash megabytes;
# the password policy itself (12..1024 by default) answers `weak_password`.
Username = Annotated[str, Field(min_length=1, max_length=256)]
Password = Annotated[str, Field(min_length=1, max_length=4096)]


class User(BaseModel):
    """A user as everybody outside the store sees it: never a hash."""

    model_config = ConfigDict(frozen=True)

    username: str
    roles: list[str]
    is_active: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    password_changed_at: datetime
    password_expires_at: datetime | None
    api_key_id: str | None
    api_key_last_rotated_at: datetime | None
    # The last change that ended live access (rotation, deactivation, roles, API key): the
    # gateway stamps a change it made itself with this, as the change feed would.
    access_changed_at: datetime | None = None
    # That change's position in the change feed: a login answers with it and the gateway
    # writes it into the token, so a later deactivation is told by number, not by clock.
    access_seq: int | None = None
    # Set when the account was deleted: it never signs in again; its name stays reserved.
    deleted_at: datetime | None = None
    # When the current API key was first used (None: not yet, or no key).
    api_key_first_used_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ApiKeyRotation:
    """The outcome of `rotate_api_key`: the user and the new key, in clear text this once."""

    user: User
    api_key: str = field(repr=False)
    # Where the secrets layer stored the new key (None: no managed store, e.g. `env`).
    stored_at: str | None = None
    # True when no key was supplied anywhere and the store generated one.
    generated: bool = False


class Credentials(BaseModel):
    """Body of `POST /internal/identity/authenticate`."""

    username: Username
    password: Password


class ApiKeyIn(BaseModel):
    """Body of `POST /internal/identity/api-keys/verify`."""

    api_key: Annotated[str, Field(min_length=1, max_length=1024)]


class PasswordRotationIn(BaseModel):
    """Body of `POST /internal/identity/password/rotate`."""

    username: Username
    current_password: Password
    new_password: Password


class RolesIn(BaseModel):
    """Body of `PUT /internal/identity/users/{username}/roles`."""

    roles: Annotated[list[str], Field(max_length=64)]


class UserOut(BaseModel):
    """`{"user": ...}`."""

    user: User


class UsersOut(BaseModel):
    """`{"users": [...]}`."""

    users: list[User]


class AccessChange(BaseModel):
    """One change that ended a user's live access: what the gateway needs to act on it."""

    model_config = ConfigDict(frozen=True)

    # The feed's position of this change: unique, in commit order.
    seq: int
    username: str
    is_active: bool
    roles: list[str]
    changed_at: datetime
    api_key_id: str | None
    # Tokens issued before this are stale; an API-key rotation alone leaves them alone.
    password_changed_at: datetime


class AccessChangesOut(BaseModel):
    """`{"changes": [...], "cursor": ..., "more": ...}`: poll again with `after=cursor`."""

    changes: list[AccessChange]
    cursor: int
    # True when the page was full: poll again at once instead of waiting.
    more: bool = False


class ApiKeyVerified(BaseModel):
    """`{"user": ..., "key_id": ...}`."""

    user: User
    key_id: str


class AuditEventOut(BaseModel):
    """One security event as the audit API and the CLI give it (one JSON object per line)."""

    model_config = ConfigDict(frozen=True)

    id: int
    time: datetime
    type: str
    actor: str | None
    subject: str | None
    client_address: str | None
    request_id: str | None
    outcome: str
    detail: dict[str, Any] | None = None


class AuditPageOut(BaseModel):
    """`{"events": [...], "next_cursor": ...}`, newest first; no `next_cursor`: the last page."""

    events: list[AuditEventOut]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedPassword:
    """A user and the one-time password just set (None: the caller chose the password)."""

    user: User
    one_time_password: str | None = field(default=None, repr=False)


class NewUserIn(BaseModel):
    """Body of `POST /internal/identity/users`: no password makes a one-time one."""

    username: Username
    roles: Annotated[list[str], Field(min_length=1, max_length=64)]
    password: Password | None = None


class IssuedPasswordOut(BaseModel):
    """`{"user": ..., "one_time_password": ...}`: the password is shown this once."""

    user: User
    one_time_password: str | None = None


class ApiKeyIssuedOut(BaseModel):
    """`{"user", "key_id", "api_key", "stored_at"}`: the clear key is shown this once."""

    user: User
    key_id: str
    api_key: str
    stored_at: str | None = None


class RevocationIn(BaseModel):
    """Body of `POST /internal/identity/tokens/revoked`: a gateway logout."""

    jti: Annotated[str, Field(min_length=1, max_length=64)]
    username: Username
    expires_at: AwareDatetime


class Revocation(BaseModel):
    """A revoked token's id and when it would have expired."""

    jti: str
    expires_at: datetime


class RevocationsOut(BaseModel):
    """`{"revoked": [...]}`: the revocations still in force."""

    revoked: list[Revocation]


# One save's count of anything: far above what a gateway counts between two saves.
_MAX_COUNT = 1_000_000_000


class KeyUsage(BaseModel):
    """API-key usage of one key id: totals, or a gateway's counts since its last flush."""

    key_id: Annotated[str, Field(min_length=1, max_length=16)]
    username: Annotated[str, Field(min_length=1, max_length=64)]
    requests: Annotated[int, Field(ge=0, le=_MAX_COUNT)]
    services: dict[Annotated[str, Field(max_length=32)], Annotated[int, Field(ge=0, le=_MAX_COUNT)]]
    status_classes: dict[
        Annotated[str, Field(max_length=8)], Annotated[int, Field(ge=0, le=_MAX_COUNT)]
    ]
    first_used_at: AwareDatetime
    last_used_at: AwareDatetime
    last_client: Annotated[str | None, Field(max_length=64)] = None


class KeyUsageIn(BaseModel):
    """Body of `POST /internal/identity/api-keys/usage`: counts to add."""

    keys: Annotated[list[KeyUsage], Field(max_length=10_000)]


class KeyUsageOut(BaseModel):
    """`{"keys": [...]}`: the stored totals."""

    keys: list[KeyUsage]


class ThrottledIn(BaseModel):
    """Body of `POST /internal/identity/audit/login-throttled`."""

    username: Username


class Recorded(BaseModel):
    """`{"recorded": true}`: the write committed."""

    recorded: bool = True


Code = Annotated[str, Field(min_length=1, max_length=64)]
Challenge = Annotated[str, Field(min_length=16, max_length=128)]
Credential = Annotated[str, Field(min_length=2, max_length=64_000)]


class FactorOut(BaseModel):
    """One confirmed second factor (never its secret)."""

    id: int
    kind: str
    label: str
    created_at: datetime
    last_used_at: datetime | None = None


class FactorsOut(BaseModel):
    """`{"factors", "recovery_codes_left", "required"}`."""

    factors: list[FactorOut]
    recovery_codes_left: int
    # True when the account's roles require a second factor.
    required: bool


class TotpEnrolment(BaseModel):
    """A started TOTP enrolment: the secret, shown this once, and its `otpauth://` URI."""

    factor_id: int
    secret: str
    otpauth_uri: str


class TotpConfirmed(BaseModel):
    """A confirmed enrolment: recovery codes shown this once (empty: the old ones stand)."""

    factor_id: int
    recovery_codes: list[str]
    user: User


class SecondStepIn(BaseModel):
    """Body of `POST /internal/identity/mfa/verify`: the challenge and one answer."""

    challenge: Challenge
    code: Code | None = None
    recovery_code: Code | None = None
    # A passkey assertion: the JSON of the credential `navigator.credentials.get` returned.
    passkey: Credential | None = None


class EnrolStartIn(BaseModel):
    """Body of `POST /internal/identity/mfa/totp`: the signed-in user or an enrolment
    challenge."""

    username: Username | None = None
    challenge: Challenge | None = None
    label: Annotated[str, Field(min_length=1, max_length=64)] = "Authenticator app"


class EnrolConfirmIn(BaseModel):
    """Body of `POST /internal/identity/mfa/totp/confirm`."""

    username: Username | None = None
    challenge: Challenge | None = None
    factor_id: Annotated[int, Field(ge=1, le=2**31 - 1)]
    code: Code


class PasskeyOptions(BaseModel):
    """A WebAuthn ceremony's options (for `navigator.credentials`) and the handle naming it."""

    handle: str
    options: dict[str, Any]


class PasskeyRegistered(BaseModel):
    """A registered passkey: recovery codes shown this once (empty: the old ones stand)."""

    factor_id: int
    recovery_codes: list[str]
    user: User


class PasskeyOptionsIn(BaseModel):
    """Body of `POST /internal/identity/mfa/passkey/register/options`."""

    username: Username | None = None
    challenge: Challenge | None = None


class PasskeyRegisterIn(BaseModel):
    """Body of `POST /internal/identity/mfa/passkey/register`: the credential's JSON."""

    username: Username | None = None
    challenge: Challenge | None = None
    handle: Challenge
    credential: Credential
    label: Annotated[str, Field(min_length=1, max_length=64)] = "Passkey"


class PasskeyLoginIn(BaseModel):
    """Body of `POST /internal/identity/mfa/passkey/options`: a login challenge."""

    challenge: Challenge
