"""The gateway's own endpoints: auth, admin, health and JWKS (the proxy lives in proxy.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from services.api_gateway.auth import Login, bearer_token
from services.api_gateway.deps import (
    ContextDep,
    CurrentPrincipal,
    RuntimeDep,
    admin_principal,
)
from services.api_gateway.errors import GatewayError, InvalidRequest
from services.api_gateway.principal import AuthMethod, Principal
from services.api_gateway.readiness import readiness_checks
from services.api_gateway.schemas import (
    ApiKeyUsageOut,
    ApiKeyUsageResponse,
    Health,
    Jwks,
    MeResponse,
    MfaChallengeBody,
    PasswordRotateRequest,
    PasswordRotateResponse,
    SecondStepRequest,
    StateHealth,
    TokenRequest,
    TokenResponse,
)
from shared.docs import inline_schema
from shared.errors import (
    ErrorBody,
    ErrorCode,
    describe_validation_errors,
    error_responses,
    invalid_fields,
)
from shared.readiness import readiness_response
from shared.roles import services_for
from shared.usernames import username_label


def _timestamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
_TOKEN_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [inline_schema(TokenRequest), inline_schema(SecondStepRequest)]}
            },
            "application/x-www-form-urlencoded": {"schema": inline_schema(TokenRequest)},
        },
    }
}
_TOKEN_RESPONSES = {
    **error_responses(400, 401, 403, 413, 422, 429, 502, 503, 504),
    401: {
        "description": (
            "`invalid_credentials` (also a wrong code, or a used or expired challenge), or "
            "`mfa_required`: the password checked out and a second factor is due; answer "
            "with the challenge (or, `enrolment_required`, enrol a factor with it first)"
        ),
        "content": {
            "application/json": {
                "schema": {"anyOf": [inline_schema(ErrorBody), inline_schema(MfaChallengeBody)]}
            }
        },
    },
}

auth = APIRouter(prefix="/auth", tags=["auth"])
admin = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(admin_principal)])
health = APIRouter(tags=["health"])
docs = APIRouter()


async def _token_request(request: Request) -> TokenRequest | SecondStepRequest:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if content_type in _FORM_TYPES:
        form = await request.form()
        data = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        try:
            data = await request.json()
        except (ValueError, RecursionError):
            raise InvalidRequest(
                'the body must be JSON {"username", "password"} or an OAuth2 password form'
            ) from None
    model: type[TokenRequest | SecondStepRequest] = (
        SecondStepRequest if isinstance(data, dict) and "challenge" in data else TokenRequest
    )
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        raise InvalidRequest(
            describe_validation_errors(errors), fields=invalid_fields(errors)
        ) from None
    if isinstance(parsed, SecondStepRequest) and (
        sum(answer is not None for answer in (parsed.code, parsed.recovery_code, parsed.passkey))
        != 1
    ):
        raise InvalidRequest(
            "code: give one of code (from the authenticator app), recovery_code or passkey",
            fields=["code", "recovery_code", "passkey"],
        )
    return parsed


def token_response(login: Login) -> TokenResponse:
    """Return the token body of a login."""
    issued = login.issued
    return TokenResponse(
        access_token=issued.token,
        expires_in=issued.expires_at - issued.issued_at,
        expires_at=_timestamp(issued.expires_at),
        roles=login.roles,
    )


@auth.post(
    "/token",
    response_model=TokenResponse,
    summary="Log in with a password (then a second factor) and get an access token",
    responses=_TOKEN_RESPONSES,
    openapi_extra=_TOKEN_BODY,
)
async def issue_token(request: Request, runtime: RuntimeDep, context: ContextDep) -> TokenResponse:
    """Check the password with the identity service and issue a signed JWT.

    When the account has a second factor, or its role requires one, the password step
    answers `401 mfa_required` with a short-lived, single-use `challenge`; send it back as
    `{"challenge", "code"}` (a TOTP code) or `{"challenge", "recovery_code"}` to get the
    token. An account that must enrol first gets `enrolment_required: true`: the challenge
    then only allows `POST /auth/mfa/totp` and `POST /auth/mfa/totp/confirm`.
    """
    credentials = await _token_request(request)
    if isinstance(credentials, SecondStepRequest):
        login = await runtime.authenticator.second_step(
            credentials.challenge,
            code=credentials.code,
            recovery_code=credentials.recovery_code,
            passkey=credentials.passkey,
            client=context.client,
        )
        username = login.username
    else:
        login = await runtime.authenticator.login(
            credentials.username, credentials.password.get_secret_value(), client=context.client
        )
        username = username_label(credentials.username)
    issued = login.issued
    context.principal = Principal(
        # The account's canonical name, never the spelling presented (the access log's user).
        username=username,
        roles=tuple(login.roles),
        auth_method=AuthMethod.PASSWORD,
        jti=issued.jti,
        expires_at=issued.expires_at,
    )
    return token_response(login)


@auth.post(
    "/logout",
    status_code=204,
    response_class=Response,
    summary="Revoke the presented bearer token",
    responses=error_responses(401, 422),
)
async def logout(request: Request, runtime: RuntimeDep, principal: CurrentPrincipal) -> Response:
    """Revoke the bearer token until it expires."""
    if principal.auth_method is not AuthMethod.PASSWORD:
        raise InvalidRequest("logout revokes a bearer token; API keys are revoked by rotation")
    token = bearer_token(request.headers.get("authorization", ""))
    await runtime.authenticator.logout(principal, token)
    return Response(status_code=204)


@auth.get(
    "/me",
    response_model=MeResponse,
    summary="Who am I",
    responses=error_responses(401, 403, 502, 503),
)
async def me(principal: CurrentPrincipal) -> MeResponse:
    """Return the caller, their roles, the services they may reach and how they authenticated."""
    return MeResponse(
        username=principal.username,
        roles=list(principal.roles),
        services=[service.value for service in services_for(principal.roles)],
        auth_method=principal.auth_method.value,
        expires_at=_timestamp(principal.expires_at) if principal.expires_at else None,
        key_id=principal.key_id,
    )


@auth.post(
    "/password/rotate",
    response_model=PasswordRotateResponse,
    summary="Replace a password (also when it has expired)",
    responses=error_responses(400, 401, 403, 413, 422, 429, 502, 503, 504),
)
async def rotate_password(
    body: PasswordRotateRequest, runtime: RuntimeDep, context: ContextDep
) -> PasswordRotateResponse:
    """Check the current password and set a new one; the user's live tokens are revoked."""
    user = await runtime.authenticator.rotate_password(
        body.username,
        body.current_password.get_secret_value(),
        body.new_password.get_secret_value(),
        client=context.client,
    )
    return PasswordRotateResponse.model_validate(user, from_attributes=True)


@admin.get(
    "/api-keys/usage",
    response_model=ApiKeyUsageResponse,
    summary="API-key usage totals",
    responses=error_responses(401, 403),
)
async def api_key_usage(runtime: RuntimeDep) -> ApiKeyUsageResponse:
    """Return every current API key, used or not: requests, per service and status class,
    first and last use, last client. Counts survive a gateway restart (Redis, or the
    identity store for in-process state)."""
    usage = await runtime.state.api_key_usage()
    keys = [
        ApiKeyUsageOut(
            key_id=entry.key_id,
            username=entry.username,
            requests=entry.requests,
            services=dict(entry.services),
            status_classes=dict(entry.status_classes),
            first_used_at=_timestamp(entry.first_used_at),
            last_used_at=_timestamp(entry.last_used_at),
            last_client=entry.last_client,
        )
        for entry in usage
    ]
    seen = {entry.key_id for entry in usage}
    try:
        users = await runtime.identity.list_users()
    except GatewayError:
        users = []  # the counts this gateway holds are still worth showing
    keys.extend(
        ApiKeyUsageOut(
            key_id=user.api_key_id,
            username=user.username,
            requests=0,
            services={},
            status_classes={},
            first_used_at=None,
            last_used_at=None,
            last_client=None,
        )
        for user in users
        if user.api_key_id is not None and user.api_key_id not in seen and user.deleted_at is None
    )
    return ApiKeyUsageResponse(keys=keys)


@health.get("/healthz", response_model=Health, response_model_exclude_none=True, summary="Liveness")
async def healthz() -> Health:
    """Answer while the process runs."""
    return Health(status="ok")


@health.get(
    "/readyz",
    response_model=Health,
    response_model_exclude_none=True,
    summary="Readiness",
    responses=error_responses(503),
)
async def readyz(runtime: RuntimeDep) -> Response:
    """Answer 200 while the gateway can serve, listing what is degraded; 503 without identity.

    Redis down leaves the answer at 200 `degraded`: this replica still authenticates on its
    in-memory state, and taking every replica out of the load balancer because the shared
    cache is down would turn a degradation into an outage. A downstream service that is
    down is listed the same way; only its own routes fail.
    """
    condition = runtime.state.condition()
    state = (
        None
        if condition.backend == "memory"
        else StateHealth(
            backend=condition.backend, available=condition.available, detail=condition.detail
        ).model_dump()
    )
    extra = {"state": state} if state is not None else {}
    checks = await readiness_checks(runtime)
    return readiness_response(checks, code=ErrorCode.UPSTREAM_UNAVAILABLE, **extra)


@health.get("/.well-known/jwks.json", response_model=Jwks, summary="Token verification keys")
async def jwks(runtime: RuntimeDep) -> dict[str, Any]:
    """Return the public keys that verify the gateway's access tokens."""
    return runtime.tokens.jwks()


@docs.get("/openapi.json", include_in_schema=False)
async def openapi(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """Return the gateway's API document, the portfolio's REST API included."""
    return JSONResponse(await runtime.docs.get(request.app.openapi))


routers = (auth, admin, health, docs)
