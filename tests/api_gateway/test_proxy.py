import asyncio
import hashlib

import jwt
import pytest

from devstack.ports import free_port
from services.api_gateway.proxy import credential_parameter
from shared.keys import key_id, load_private_key
from shared.roles import ROLES, SERVICES, can_access
from tests.api_gateway.conftest import running_gateway
from tests.api_gateway.upstream import pattern


def signed_token(gateway, private_key: str, *, omit: str) -> str:
    """A token signed with the gateway's own key, like an issued one but without `omit`."""
    issued = gateway.runtime.tokens.issue(username="alice", roles=["trading"])
    claims = jwt.decode(issued.token, options={"verify_signature": False})
    del claims[omit]
    key = load_private_key(private_key)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": key_id(key)})


ROLE_CASES = [
    *(pytest.param([role.value], id=role.value) for role in ROLES),
    pytest.param([], id="no-role"),
]


# --- authorisation --------------------------------------------------------------------


@pytest.mark.parametrize("roles", ROLE_CASES)
@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.value)
async def test_role_reaches_exactly_the_services_the_map_grants(gateway, roles, service):
    response = await gateway.client.get(
        f"/api/{service.value}/things", headers=gateway.bearer("alice", *roles)
    )
    if can_access(roles, service):
        assert response.status_code == 200
        caller = response.json()["caller"]
        assert caller == {
            "user": "alice",
            "roles": roles,
            "auth": "password",
            "aud": service.value,
            "key_id": None,
        }
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


async def test_request_without_credentials_is_refused(gateway):
    response = await gateway.client.get("/api/trading/things")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_non_bearer_authorization_is_refused(gateway):
    response = await gateway.client.get(
        "/api/trading/things", headers={"Authorization": "Basic YWxpY2U6cHc="}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Bearer-ish", "Digest"])
async def test_a_valid_token_under_another_scheme_is_refused(gateway, scheme):
    token = gateway.runtime.tokens.issue(username="alice", roles=["trading"]).token
    response = await gateway.client.get(
        "/api/trading/things", headers={"Authorization": f"{scheme} {token}"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "invalid_token",
        "message": "the Authorization header must be 'Bearer <token>'",
    }
    # The same token as a bearer token is let through, so the refusal is the scheme's.
    response = await gateway.client.get(
        "/api/trading/things", headers={"Authorization": f"bearer {token}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("claim", ["sub", "roles", "iat", "nbf", "exp", "iss", "aud", "jti"])
async def test_a_token_lacking_a_required_claim_is_401_not_500(gateway, keys, claim):
    token = signed_token(gateway, keys.jwt_private, omit=claim)
    response = await gateway.client.get(
        "/api/trading/things", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == {
        "code": "invalid_token",
        "message": f"the access token lacks the '{claim}' claim",
    }


async def test_unknown_service_is_404(gateway):
    response = await gateway.client.get("/api/billing/x", headers=gateway.bearer("root", "admin"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_service"


@pytest.mark.parametrize(
    "path",
    [
        "/api/portfolio/internal/identity/users",
        "/api/portfolio/internal",
        "/api/portfolio//internal/identity/users",
        "/api/portfolio/%69nternal/identity/users",
        "/api/portfolio/INTERNAL/identity/users",
        "/api/portfolio/x/%2e%2e/internal/identity/users",
    ],
)
async def test_identity_internal_api_is_never_reachable_through_the_proxy(gateway, path):
    response = await gateway.client.get(path, headers=gateway.bearer("root", "admin"))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_revoked_token_is_refused_by_the_proxy(gateway):
    issued = gateway.runtime.tokens.issue(username="alice", roles=["trading"])
    headers = {"Authorization": f"Bearer {issued.token}"}
    assert (await gateway.client.get("/api/trading/x", headers=headers)).status_code == 200
    await gateway.runtime.state.revoke_token(issued.jti, issued.expires_at)
    response = await gateway.client.get("/api/trading/x", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


# --- what is forwarded ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_query_and_body_are_forwarded_faithfully(gateway, method):
    body = b'{"qty": 1}' if method in ("POST", "PUT", "PATCH") else b""
    response = await gateway.client.request(
        method,
        "/api/trading/orders/a%20b/42?x=1&y=%2F&x=2",
        content=body,
        headers={**gateway.bearer("alice", "trading"), "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == method
    assert echo["raw_path"] == "/trading/orders/a%20b/42"
    assert echo["query"] == "x=1&y=%2F&x=2"
    assert echo["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert echo["headers"].get("content-type") == ["application/json"]


async def test_head_request_is_forwarded_without_a_body(gateway):
    response = await gateway.client.head("/api/trading/x", headers=gateway.bearer("a", "trading"))
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize("status", [201, 204, 301, 404, 409, 500, 503])
async def test_upstream_status_is_passed_through(gateway, status):
    response = await gateway.client.get(
        f"/api/market/status/{status}", headers=gateway.bearer("a", "market")
    )
    assert response.status_code == status
    assert "location" not in response.headers  # redirects are not followed, nothing invented


async def test_large_bodies_stream_both_ways(gateway):
    upload = pattern(3 * 1024 * 1024 + 7)
    response = await gateway.client.post(
        "/api/trading/upload", content=upload, headers=gateway.bearer("a", "trading")
    )
    assert response.json()["body_length"] == len(upload)
    assert response.json()["body_sha256"] == hashlib.sha256(upload).hexdigest()

    size = 5 * 1024 * 1024 + 3
    response = await gateway.client.get(
        f"/api/trading/bytes/{size}", headers=gateway.bearer("a", "trading")
    )
    assert response.status_code == 200
    assert response.content == pattern(size)


@pytest.mark.parametrize("size", [2, 1000, 256 * 1024])
async def test_an_answer_cut_short_is_a_clean_502_while_small_enough_to_hold(gateway, size):
    # Answers up to 256 KiB are read whole before the status goes out, so one the downstream
    # breaks off is still a JSON 502, not a 200 with half a body.
    response = await gateway.client.get(
        f"/api/trading/short/{size}", headers=gateway.bearer("a", "trading")
    )
    assert response.status_code == 502
    assert response.json()["error"] == {
        "code": "upstream_unavailable",
        "message": "the trading service broke the connection",
    }


async def test_a_large_answer_cut_short_ends_the_clients_answer_midway(gateway):
    # Larger answers are streamed: the status has gone out, so the break reaches the client.
    size = 256 * 1024 + 1
    with pytest.raises(Exception) as broken:  # noqa: PT011 - the ASGI transport re-raises ours
        await gateway.client.get(
            f"/api/trading/short/{size}", headers=gateway.bearer("a", "trading")
        )
    assert "broke the connection" in str(broken.value)


async def test_chunked_upload_without_content_length_is_streamed(gateway):
    chunks = [b"a" * 70_000, b"b" * 70_000, b"c" * 10]

    async def body():
        for chunk in chunks:
            yield chunk

    response = await gateway.client.post(
        "/api/trading/upload", content=body(), headers=gateway.bearer("a", "trading")
    )
    assert response.json()["body_sha256"] == hashlib.sha256(b"".join(chunks)).hexdigest()


async def test_request_id_is_kept_when_sane_and_returned(gateway):
    response = await gateway.client.get(
        "/api/trading/x", headers={**gateway.bearer("a", "trading"), "X-Request-ID": "trace-42"}
    )
    assert response.json()["headers"]["x-request-id"] == ["trace-42"]
    assert response.headers.get_list("x-request-id") == ["trace-42"]


async def test_insane_request_id_is_replaced(gateway):
    response = await gateway.client.get(
        "/api/trading/x", headers={**gateway.bearer("a", "trading"), "X-Request-ID": "bad id!"}
    )
    forwarded = response.json()["headers"]["x-request-id"]
    assert forwarded != ["bad id!"]
    assert response.headers["x-request-id"] == forwarded[0]


async def test_upstream_response_headers_are_forwarded_but_not_its_request_id(gateway):
    response = await gateway.client.get("/api/trading/x", headers=gateway.bearer("a", "trading"))
    assert response.headers["x-upstream"] == "yes"
    assert response.headers["set-cookie"] == "upstream=1"
    assert response.headers.get_list("x-request-id") != ["upstream-own-id"]
    assert len(response.headers.get_list("x-request-id")) == 1


# --- upstream failures ----------------------------------------------------------------


async def test_upstream_down_answers_502_upstream_unavailable(make_settings, keys):
    settings = make_settings(trading_service_url=f"http://127.0.0.1:{free_port()}")
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.get(
            "/api/trading/x", headers=gateway.bearer("a", "trading")
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"


async def test_slow_upstream_answers_504_upstream_timeout(make_settings, keys):
    settings = make_settings(gateway_upstream_timeout_seconds=0.3)
    async with running_gateway(settings, keys.secrets()) as gateway:
        response = await gateway.client.get(
            "/api/trading/slow/3", headers=gateway.bearer("a", "trading")
        )
    assert response.status_code == 504
    assert response.json()["error"] == {
        "code": "upstream_timeout",
        "message": "the trading service did not answer in time",
    }


async def test_non_idempotent_request_is_not_retried_when_the_upstream_drops_it(
    make_settings, keys
):
    received: list[bytes] = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = make_settings(execution_service_url=f"http://127.0.0.1:{port}")
    try:
        async with running_gateway(settings, keys.secrets()) as gateway:
            response = await gateway.client.post(
                "/api/execution/orders", json={"qty": 1}, headers=gateway.bearer("a", "execution")
            )
    finally:
        server.close()
        await server.wait_closed()
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
    assert len(received) == 1
    assert received[0].startswith(b"POST /orders ")


# --- credentials in the query string ---------------------------------------------------


@pytest.mark.parametrize(
    ("query", "found"),
    [
        (b"api_key=k", "api_key"),
        (b"limit=5&ACCESS_TOKEN=t", "access_token"),
        (b"Api-Key=k", "api_key"),
        (b"%70assword=p", "password"),
        (b"a=1;token=t", "token"),
        (b"api_key[]=k", "api_key"),
        (b"password", "password"),
        (b"+token+=t", "token"),
    ],
)
def test_a_credential_parameter_is_found_however_spelled(query, found):
    assert credential_parameter(query) == found


@pytest.mark.parametrize(
    "query", [b"limit=5", b"tokens=1", b"key=abc", b"sort=password", b"=token", b"&&", b"%zz=1"]
)
def test_ordinary_parameters_are_not_taken_for_credentials(query):
    assert credential_parameter(query) is None
