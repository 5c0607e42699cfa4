"""The gateway's second-factor endpoints: the signed-in user's factors, enrolment (also with
an enrolment-only challenge) and the admin's reset."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from services.api_gateway.deps import ContextDep, RuntimeDep, admin_principal
from services.api_gateway.errors import Forbidden
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.routes import token_response
from services.api_gateway.runtime import Runtime
from services.api_gateway.schemas import (
    FactorsResponse,
    PasskeyLoginOptionsRequest,
    PasskeyLoginOptionsResponse,
    PasskeyOptionsRequest,
    PasskeyOptionsResponse,
    PasskeyRegisterRequest,
    TotpConfirmRequest,
    TotpConfirmResponse,
    TotpEnrolmentResponse,
    TotpStartRequest,
    UserOut,
    UserResponse,
)
from shared.errors import error_responses

admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_principal)])
auth = APIRouter(prefix="/auth/mfa", tags=["mfa"])


async def _person(request: Request, runtime: Runtime, context: ContextDep) -> Principal:
    """Return the caller signed in with a password (bearer); an API key may not change
    the second factors of the person it belongs to."""
    principal = await runtime.authenticator.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    context.principal = principal
    if principal.auth_method is not AuthMethod.PASSWORD:
        raise Forbidden("sign in with your password to manage your second factors")
    return principal


async def _enrolling(
    challenge: str | None, request: Request, runtime: Runtime, context: ContextDep
) -> tuple[str | None, str | None]:
    """Return the (username, challenge) pair naming who enrols: the owner of the body's
    enrolment challenge (who has no bearer yet), else the caller signed in with a password."""
    if challenge is not None:
        return None, challenge
    principal = await _person(request, runtime, context)
    return principal.username, None


@auth.get(
    "",
    response_model=FactorsResponse,
    summary="My second factors",
    responses=error_responses(401, 403, 502, 503, 504),
)
async def my_factors(request: Request, runtime: RuntimeDep, context: ContextDep) -> FactorsResponse:
    """List the caller's second factors, how many recovery codes are left, and whether the
    caller's roles require a second factor (`PORTFOLIO_MFA_REQUIRED_ROLES`)."""
    principal = await _person(request, runtime, context)
    return FactorsResponse.model_validate(await runtime.identity.list_factors(principal.username))


@auth.post(
    "/totp",
    response_model=TotpEnrolmentResponse,
    summary="Start a TOTP enrolment",
    responses=error_responses(401, 403, 404, 422, 502, 503, 504),
)
async def start_totp(
    body: TotpStartRequest, request: Request, runtime: RuntimeDep, context: ContextDep
) -> TotpEnrolmentResponse:
    """Create a new TOTP secret for the caller (bearer), or for the owner of an enrolment
    `challenge` (from a `mfa_required` answer with `enrolment_required`). The secret and its
    `otpauth://` URI are shown this once; the factor counts once confirmed. `401
    invalid_credentials`: the challenge is unknown, used or expired; `503`: the identity
    service has no `PORTFOLIO_MFA_ENCRYPTION_KEY`."""
    username, challenge = await _enrolling(body.challenge, request, runtime, context)
    started = await runtime.identity.start_totp(
        username=username, challenge=challenge, label=body.label
    )
    return TotpEnrolmentResponse.model_validate(started)


@auth.post(
    "/totp/confirm",
    response_model=TotpConfirmResponse,
    summary="Confirm a TOTP enrolment with its first code",
    responses=error_responses(401, 403, 422, 429, 502, 503, 504),
)
async def confirm_totp(
    body: TotpConfirmRequest, request: Request, runtime: RuntimeDep, context: ContextDep
) -> TotpConfirmResponse:
    """Confirm the enrolment with the code the app shows now (throttled like a password).
    The ten recovery codes come back this once (empty when the earlier ones still stand).
    With an enrolment challenge the sign-in completes: the answer carries the token. `401
    invalid_credentials`: wrong code, or the challenge is used or expired."""
    username, challenge = await _enrolling(body.challenge, request, runtime, context)
    if challenge is not None:
        login, codes = await runtime.authenticator.finish_enrolment(
            challenge, body.factor_id, body.code, client=context.client
        )
        return TotpConfirmResponse(
            factor_id=body.factor_id, recovery_codes=codes, token=token_response(login)
        )
    _, codes = await runtime.identity.confirm_totp(
        username=username, challenge=None, factor_id=body.factor_id, code=body.code
    )
    return TotpConfirmResponse(factor_id=body.factor_id, recovery_codes=codes)


@auth.post(
    "/passkey/register/options",
    response_model=PasskeyOptionsResponse,
    summary="Start a passkey registration",
    responses=error_responses(401, 403, 404, 422, 502, 503, 504),
)
async def passkey_registration_options(
    body: PasskeyOptionsRequest, request: Request, runtime: RuntimeDep, context: ContextDep
) -> PasskeyOptionsResponse:
    """Return the options for `navigator.credentials.create` (attestation `none`, user
    verification preferred) and the `handle` to send back with the credential: for the
    caller (bearer), or for the owner of an enrolment `challenge`."""
    username, challenge = await _enrolling(body.challenge, request, runtime, context)
    started = await runtime.identity.passkey_registration_options(
        username=username, challenge=challenge
    )
    return PasskeyOptionsResponse.model_validate(started)


@auth.post(
    "/passkey/register",
    response_model=TotpConfirmResponse,
    summary="Register a passkey",
    responses=error_responses(401, 403, 422, 429, 502, 503, 504),
)
async def register_passkey(
    body: PasskeyRegisterRequest, request: Request, runtime: RuntimeDep, context: ContextDep
) -> TotpConfirmResponse:
    """Verify the registration ceremony and keep the passkey; recovery codes come back once
    (empty when the earlier ones still stand). With an enrolment challenge the sign-in
    completes: the answer carries the token."""
    username, challenge = await _enrolling(body.challenge, request, runtime, context)
    if challenge is not None:
        login, factor_id, codes = await runtime.authenticator.finish_passkey_enrolment(
            challenge, body.handle, body.credential, body.label, client=context.client
        )
        return TotpConfirmResponse(
            factor_id=factor_id, recovery_codes=codes, token=token_response(login)
        )
    _, factor_id, codes = await runtime.identity.register_passkey(
        username=username,
        challenge=None,
        handle=body.handle,
        credential=body.credential,
        label=body.label,
    )
    return TotpConfirmResponse(factor_id=factor_id, recovery_codes=codes)


@auth.post(
    "/passkey/options",
    response_model=PasskeyLoginOptionsResponse,
    summary="Options of a passkey sign-in",
    responses=error_responses(401, 422, 502, 503, 504),
)
async def passkey_login_options(
    body: PasskeyLoginOptionsRequest, runtime: RuntimeDep
) -> PasskeyLoginOptionsResponse:
    """Return the options for `navigator.credentials.get` answering a login challenge; send
    the credential to `POST /auth/token` as `{"challenge", "passkey"}`."""
    answer = await runtime.identity.passkey_login_options(body.challenge)
    return PasskeyLoginOptionsResponse.model_validate(answer)


@auth.delete(
    "/{factor_id}",
    response_model=FactorsResponse,
    summary="Remove one of my second factors",
    responses=error_responses(401, 403, 404, 409, 502, 503, 504),
)
async def remove_factor(
    factor_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    request: Request,
    runtime: RuntimeDep,
    context: ContextDep,
) -> FactorsResponse:
    """Remove a factor; return those left. `409 conflict`: it is the last factor of an
    account whose role requires one (enrol another first)."""
    principal = await _person(request, runtime, context)
    left = await runtime.identity.remove_factor(principal.username, factor_id)
    return FactorsResponse.model_validate(left)


@admin.post(
    "/users/{username}/mfa/reset",
    response_model=UserResponse,
    summary="Reset a user's second factors",
    responses=error_responses(401, 403, 404, 409, 502, 503, 504),
)
async def reset_mfa(username: str, runtime: RuntimeDep) -> UserResponse:
    """Remove every second factor and recovery code of a user (audited `mfa.reset`); their
    tokens and sessions end at once, and they enrol again at their next sign-in when their
    role requires it. `409 conflict`: the account is deleted."""
    user = await runtime.identity.reset_mfa(username)
    await runtime.authenticator.end_access(user)
    return UserResponse(user=UserOut.model_validate(user, from_attributes=True))


routers = (auth, admin)
