"""Forged bearer tokens: `alg: none`, algorithm confusion, no `exp`, foreign `aud`, unknown `kid`.

Each is sent to the real gateway process; each must get 401 and never reach a service.
"""

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from shared.keys import generate_private_key, key_id, load_private_key

ISSUER = "legacycointrader-gateway"
AUDIENCE = "legacycointrader-api"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    values: dict[str, object] = {
        "sub": "mallory",
        "roles": ["admin"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": uuid.uuid4().hex,
    }
    values.update(changes)
    return {k: v for k, v in values.items() if v is not None}


def unsigned(header: dict[str, object], payload: dict[str, object], signature: bytes = b"") -> str:
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(payload).encode())
    return f"{head}.{body}.{b64(signature)}"


def signed(private_key: str, payload: dict[str, object], kid: str | None = None) -> str:
    key = load_private_key(private_key)
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid or key_id(key)})


def forgeries(real_private_key: str) -> dict[str, str]:
    real = load_private_key(real_private_key)
    kid = key_id(real)
    public_pem = real.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_raw = real.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    confused = {}
    for label, secret in (
        ("pem", public_pem),
        ("raw", public_raw),
        ("jwk-x", b64(public_raw).encode()),
    ):
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = unsigned(header, claims()).rsplit(".", 1)[0]
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        confused[f"HS256 keyed with the public key ({label})"] = f"{signing_input}.{b64(mac)}"
    return {
        "alg none": unsigned({"alg": "none", "typ": "JWT", "kid": kid}, claims()),
        "alg None": unsigned({"alg": "None", "typ": "JWT"}, claims()),
        **confused,
        "no exp": signed(real_private_key, claims(exp=None)),
        "foreign aud": signed(real_private_key, claims(aud="another-api")),
        "no aud": signed(real_private_key, claims(aud=None)),
        "foreign iss": signed(real_private_key, claims(iss="someone-else")),
        "unknown kid": signed(generate_private_key(), claims(), kid="f" * 43),
        "known kid, other key": signed(generate_private_key(), claims(), kid=kid),
        "no jti": signed(real_private_key, claims(jti=None)),
        "not yet valid": signed(real_private_key, claims(nbf=int(time.time()) + 600)),
    }


CASES = list(forgeries(generate_private_key()))


@pytest.mark.parametrize("case", CASES)
def test_a_forged_or_incomplete_token_is_refused(stack, case):
    token = forgeries(stack.env["GATEWAY_JWT_PRIVATE_KEY"])[case]
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {token}"}
    ) as c:
        for path in ("/auth/me", "/api/trading/orders", "/admin/users"):
            response = c.get(path)
            assert response.status_code == 401, (case, path, response.text)
            assert response.json()["error"]["code"] == "invalid_token"


def test_an_expired_token_says_so(stack):
    past = int(time.time()) - 3600
    token = signed(stack.env["GATEWAY_JWT_PRIVATE_KEY"], claims(iat=past, nbf=past, exp=past + 60))
    response = httpx.get(
        stack.gateway_url + "/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "token_expired"


def test_the_real_key_still_works_so_the_refusals_above_mean_something(stack):
    token = signed(stack.env["GATEWAY_JWT_PRIVATE_KEY"], claims(sub="someone", roles=["trading"]))
    response = httpx.get(
        stack.gateway_url + "/auth/me", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert response.json()["username"] == "someone"
