"""Which headers cross the proxy, observed at the downstream (its raw headers) and at the client.

The header names are written out here, never taken from the proxy's own lists: a name
dropped from those lists must make a test fail, not silently remove its test case.
"""

import pytest

from services.api_gateway.proxy import _request_headers

# Every header a client could use to claim an identity downstream.
SPOOFED_IDENTITY = [
    "x-user",
    "x-username",
    "x-user-id",
    "x-user-roles",
    "x-roles",
    "x-auth-user",
    "x-authenticated-user",
    "x-forwarded-user",
    "x-remote-user",
    "remote-user",
    "x-auth-method",
    "x-service-token",
]
# Hop-by-hop headers (RFC 9110 7.6.1 and the legacy ones) a client may send.
CLIENT_HOP_BY_HOP = {
    "Connection": "keep-alive, X-Custom-Hop, X-Second-Hop",
    "X-Custom-Hop": "1",
    "X-Second-Hop": "1",
    "Keep-Alive": "timeout=5",
    "Proxy-Authenticate": "Basic realm=client",
    "Proxy-Authorization": "Basic bWFsbG9yeTpwdw==",
    "Proxy-Connection": "keep-alive",
    "TE": "trailers",
    "Trailer": "x-checksum",
    "Trailers": "x-checksum",
    "Upgrade": "websocket",
}
# Credentials, and the forwarding headers the gateway sets itself (or never forwards).
CLIENT_FORWARDING = {
    "X-API-Key": "k" * 40,
    "Cookie": "session=secret",
    "Forwarded": "for=1.2.3.4;by=evil",
    "X-Forwarded-For": "1.2.3.4",
    "X-Forwarded-Host": "evil.example",
    "X-Forwarded-Proto": "gopher",
    "X-Real-IP": "1.2.3.4",
}


def names(raw_headers: list[list[str]]) -> list[str]:
    return [name for name, _ in raw_headers]


async def test_exactly_the_expected_headers_reach_the_downstream(gateway):
    response = await gateway.client.get(
        "/api/trading/x",
        headers={
            **gateway.bearer("alice", "trading"),
            **{name: "mallory" for name in SPOOFED_IDENTITY},
            "x-identity-assertion": "forged.assertion.value",
            **CLIENT_HOP_BY_HOP,
            **CLIENT_FORWARDING,
            "X-Kept": "yes",
        },
    )
    assert response.status_code == 200, response.text
    raw = response.json()["raw_headers"]
    assert sorted(names(raw)) == [
        "accept",
        "accept-encoding",
        "host",
        "user-agent",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-identity-assertion",
        "x-kept",
        "x-request-id",
    ]
    values = dict(raw)
    assert values["x-kept"] == "yes"
    assert values["x-forwarded-for"] == "127.0.0.1"
    assert values["x-forwarded-proto"] == "http"
    assert values["host"] != "gateway"
    # The one assertion that arrived is the gateway's, naming the bearer's user.
    assert values["x-identity-assertion"] != "forged.assertion.value"
    assert response.json()["caller"]["user"] == "alice"


@pytest.mark.parametrize(
    "header",
    [
        *SPOOFED_IDENTITY,
        "x-identity-assertion",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "upgrade",
        # The gateway reads the whole request itself; the downstream has no 100 to send.
        "expect",
        *(name.lower() for name in CLIENT_FORWARDING),
    ],
)
async def test_each_dropped_header_sent_alone_never_reaches_the_downstream(gateway, header):
    # One at a time too: a header that is dropped only because another one named it (in
    # Connection) would pass the test above.
    response = await gateway.client.get(
        "/api/trading/x", headers={**gateway.bearer("alice", "trading"), header: "mallory-value"}
    )
    assert response.status_code == 200, response.text
    raw = response.json()["raw_headers"]
    assert "mallory-value" not in [value for _, value in raw]
    # The gateway sets these itself, once, with its own value.
    if header not in ("x-forwarded-for", "x-forwarded-proto", "x-identity-assertion"):
        assert header not in names(raw)


async def test_headers_named_in_the_clients_connection_header_are_dropped(gateway):
    response = await gateway.client.get(
        "/api/trading/x",
        headers={
            **gateway.bearer("alice", "trading"),
            "Connection": "X-Named-Once , x-named-twice",
            "X-Named-Once": "1",
            "X-Named-Twice": "2",
            "X-Not-Named": "3",
        },
    )
    received = names(response.json()["raw_headers"])
    assert "x-named-once" not in received
    assert "x-named-twice" not in received
    assert "x-not-named" in received


async def test_hop_by_hop_response_headers_and_those_its_connection_names_are_dropped(gateway):
    response = await gateway.client.get(
        "/api/trading/hop", headers=gateway.bearer("alice", "trading")
    )
    assert response.status_code == 200
    assert response.json() == {"hop": True}
    assert sorted(response.headers) == [
        "content-length",
        "content-type",
        "x-request-id",
        "x-upstream",
    ]
    assert response.headers["x-upstream"] == "yes"


async def test_a_redirect_to_the_downstreams_own_url_is_rewritten_to_the_public_path(
    gateway, upstream
):
    response = await gateway.client.get(
        "/api/market/redirect",
        params={"to": f"{upstream}/market/next?page=2"},
        headers=gateway.bearer("alice", "market"),
    )
    assert response.status_code == 302
    assert response.headers["location"] == "/api/market/next?page=2"


def test_a_scope_without_a_scheme_is_forwarded_as_http():
    # ASGI makes `scheme` optional, "http" when absent; uvicorn always sets it.
    headers, *_ = _request_headers(
        {"headers": [(b"accept", b"*/*")]}, "req-1", client="203.0.113.9"
    )
    assert headers == [
        (b"accept", b"*/*"),
        (b"x-request-id", b"req-1"),
        (b"x-forwarded-for", b"203.0.113.9"),
        (b"x-forwarded-proto", b"http"),
    ]


@pytest.mark.parametrize("name", ["cache-control", "age", "content-language", "vary"])
async def test_only_the_connection_header_names_headers_to_drop(gateway, name):
    # A header whose value happens to be another header's name drops nothing; only
    # `Connection` lists hop-by-hop headers.
    response = await gateway.client.get(
        "/api/trading/header",
        params={"name": name, "value": "x-upstream"},
        headers=gateway.bearer("alice", "trading"),
    )
    assert response.status_code == 200
    assert response.headers[name] == "x-upstream"
    assert response.headers["x-upstream"] == "yes"


def test_one_pass_returns_the_credentials_and_whether_a_body_is_framed():
    scope = {
        "scheme": "https",
        "headers": [
            (b"x-drop-me", b"1"),
            (b"authorization", b"Bearer abc"),
            (b"connection", b"x-drop-me"),
            (b"x-api-key", b"key-1"),
            (b"accept", b"*/*"),
            (b"connection", b"keep-alive, X-Also"),
            (b"x-also", b"2"),
        ],
    }
    headers, authorization, api_key, has_body = _request_headers(scope, "req-1", None)
    assert headers == [
        (b"accept", b"*/*"),
        (b"x-request-id", b"req-1"),
        (b"x-forwarded-proto", b"https"),
    ]
    assert (authorization, api_key, has_body) == ("Bearer abc", "key-1", False)


@pytest.mark.parametrize(
    ("framing", "forwarded"),
    [
        ((b"content-length", b"5"), [(b"content-length", b"5")]),
        ((b"transfer-encoding", b"chunked"), []),
    ],
)
def test_a_framed_body_is_noticed_and_only_its_length_forwarded(framing, forwarded):
    headers, authorization, api_key, has_body = _request_headers(
        {"headers": [framing]}, "req-1", None
    )
    assert headers[:-2] == forwarded
    assert (authorization, api_key, has_body) == (None, None, True)
