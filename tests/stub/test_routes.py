import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from services.stub.app import create_app
from services.stub.config import STUB_SERVICES, StubSecrets, StubSettings
from shared.assertion import ASSERTION_HEADER, IDENTITY_HEADERS, AssertionSigner
from shared.keys import generate_private_key, key_id, load_private_key, public_key_text

PRIVATE_KEY = generate_private_key()
SIGNER = AssertionSigner(PRIVATE_KEY)


def assertion(service: str, username: str = "alice", roles=("trading",), signer=SIGNER) -> str:
    token, _ = signer.sign(username=username, roles=roles, auth_method="password", service=service)
    return token


@pytest.fixture(params=STUB_SERVICES, ids=str)
async def stub(request) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    service = request.param
    app = create_app(
        StubSettings(stub_service_name=service),
        StubSecrets(assertion_public_key=public_key_text(load_private_key(PRIVATE_KEY))),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stub") as client:
            yield service.value, client


async def test_healthz_needs_no_assertion(stub):
    service, client = stub
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok", "service": service})


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_request_without_an_assertion_is_refused(stub, method):
    _, client = stub
    response = await client.request(method, "/orders/1")
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "invalid_token",
        "message": "refused: missing identity assertion",
    }


async def test_spoofed_identity_headers_alone_are_refused(stub):
    _, client = stub
    spoofed = {name: "admin" for name in IDENTITY_HEADERS if name != ASSERTION_HEADER}
    response = await client.get("/orders", headers=spoofed)
    assert response.status_code == 401


async def test_assertion_for_another_service_is_refused(stub):
    service, client = stub
    other = next(s.value for s in STUB_SERVICES if s.value != service)
    response = await client.get("/x", headers={ASSERTION_HEADER: assertion(other)})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


async def test_assertion_signed_by_another_key_is_refused(stub):
    service, client = stub
    forged = assertion(service, "mallory", ("admin",), AssertionSigner(generate_private_key()))
    response = await client.get("/x", headers={ASSERTION_HEADER: forged})
    assert response.status_code == 401


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_valid_assertion_is_echoed_with_the_request(stub, method):
    service, client = stub
    response = await client.request(
        method,
        "/orders/42",
        headers={
            ASSERTION_HEADER: assertion(service, "alice", ("trading", "market")),
            "X-Request-ID": "rid-1",
            "X-User": "mallory",
        },
    )
    assert response.status_code == 200
    assert response.json() == {
        "service": service,
        "method": method,
        "path": "/orders/42",
        "user": "alice",
        "roles": ["trading", "market"],
        "request_id": "rid-1",
    }


def assertion_without(service: str, claim: str) -> str:
    """An assertion signed with the gateway's key but lacking `claim` (or holding bad roles)."""
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "legacycointrader-gateway",
        "aud": service,
        "sub": "alice",
        "roles": "admin" if claim == "roles-as-a-string" else ["trading"],
        "auth": "password",
        "iat": now,
        "exp": now + 60,
    }
    claims.pop(claim, None)
    key = load_private_key(PRIVATE_KEY)
    return jwt.encode(
        claims, key, algorithm="EdDSA", headers={"kid": key_id(key), "typ": "lct-assertion+jwt"}
    )


@pytest.mark.parametrize("claim", ["roles", "auth", "iat", "sub", "roles-as-a-string"])
async def test_an_assertion_lacking_a_claim_or_with_string_roles_is_401_not_500(stub, claim):
    service, client = stub
    response = await client.get(
        "/orders", headers={ASSERTION_HEADER: assertion_without(service, claim)}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_token"
