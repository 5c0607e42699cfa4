"""A downstream service for proxy tests: `uvicorn tests.api_gateway.upstream:app`.

Every gateway service URL points at `<this server>/<service>`, so the first path segment
says which service the request was meant for; the assertion is verified for that audience.

- `/<service>/status/<n>`: answers status n
- `/<service>/bytes/<n>`: streams n bytes without a Content-Length
- `/<service>/slow/<seconds>`: answers after a pause
- `/<service>/redirect?to=<url>`: answers 302 with `Location: <url>`
- `/<service>/hop`: answers with hop-by-hop headers and one its `Connection` header names
- `/<service>/header?name=<name>&value=<value>`: answers with that header too
- `/<service>/short/<n>`: says `Content-Length: n`, sends n // 2 bytes, ends the connection
- anything else: echoes method, path, query, headers (also `raw_headers`: every pair as it
  arrived, in order, duplicates kept), body digest and the verified caller
"""

import asyncio
import hashlib
import json
import os
from urllib.parse import parse_qs

from shared.assertion import ASSERTION_HEADER, AssertionVerifier, InvalidAssertionError
from shared.roles import SERVICES

VERIFIERS: dict[str, AssertionVerifier] = {}


def verifier(service: str) -> AssertionVerifier:
    if not VERIFIERS:
        public_key = os.environ["TEST_ASSERTION_PUBLIC_KEY"]
        VERIFIERS.update({s.value: AssertionVerifier([public_key], s.value) for s in SERVICES})
    return VERIFIERS[service]


def pattern(size: int) -> bytes:
    block = bytes(range(256)) * 256
    return (block * (size // len(block) + 1))[:size]


async def _json(send, status, payload, extra_headers=()):
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-upstream", b"yes"),
        *extra_headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    # Its own and each service's (`/trading/healthz`): the gateway's /readyz probes those.
    if scope["path"].endswith("/healthz"):
        await _json(send, 200, {"status": "ok"})
        return
    digest, length = hashlib.sha256(), 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        digest.update(chunk)
        length += len(chunk)
        if not message.get("more_body"):
            break
    _, service, *rest = scope["path"].split("/")
    headers = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), []).append(value.decode("latin-1"))
    try:
        caller = verifier(service).verify(headers.get(ASSERTION_HEADER, [None])[0])
        identity = {
            "user": caller.username,
            "roles": list(caller.roles),
            "auth": caller.auth_method,
            "aud": caller.claims["aud"],
            "key_id": caller.key_id,
        }
    except (InvalidAssertionError, KeyError) as exc:
        await _json(send, 401, {"error": {"code": "invalid_token", "message": str(exc)}})
        return
    if rest[:1] == ["status"]:
        status = int(rest[1])
        if status in (204, 304):
            await send({"type": "http.response.start", "status": status, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await _json(send, status, {"status": status})
        return
    if rest[:1] == ["redirect"]:
        location = parse_qs(scope["query_string"].decode("latin-1"))["to"][0]
        await _json(send, 302, {"to": location}, extra_headers=[(b"location", location.encode())])
        return
    if rest[:1] == ["hop"]:
        hop = [
            (b"connection", b"X-Upstream-Hop, X-Other-Hop"),
            (b"x-upstream-hop", b"1"),
            (b"x-other-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b"Basic realm=upstream"),
            (b"proxy-connection", b"keep-alive"),
            (b"trailer", b"x-checksum"),
            (b"upgrade", b"websocket"),
        ]
        await _json(send, 200, {"hop": True}, extra_headers=hop)
        return
    if rest[:1] == ["header"]:
        query = parse_qs(scope["query_string"].decode("latin-1"))
        extra = [(query["name"][0].encode(), query["value"][0].encode())]
        await _json(send, 200, {"header": True}, extra_headers=extra)
        return
    if rest[:1] == ["short"]:
        size = int(rest[1])
        start = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": start})
        # uvicorn closes a connection whose answer ends short of its Content-Length.
        await send({"type": "http.response.body", "body": pattern(size // 2)})
        return
    if rest[:1] == ["slow"]:
        await asyncio.sleep(float(rest[1]))
        await _json(send, 200, {"slow": float(rest[1])})
        return
    if rest[:1] == ["bytes"]:
        data = pattern(int(rest[1]))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        for start in range(0, len(data), 100_000):
            await send(
                {
                    "type": "http.response.body",
                    "body": data[start : start + 100_000],
                    "more_body": True,
                }
            )
        await send({"type": "http.response.body", "body": b""})
        return
    await _json(
        send,
        200,
        {
            "method": scope["method"],
            "path": scope["path"],
            "raw_path": scope["raw_path"].decode("latin-1"),
            "query": scope["query_string"].decode("latin-1"),
            "headers": headers,
            "raw_headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, value in scope["headers"]
            ],
            "body_sha256": digest.hexdigest(),
            "body_length": length,
            "caller": identity,
        },
        extra_headers=[(b"x-request-id", b"upstream-own-id"), (b"set-cookie", b"upstream=1")],
    )
