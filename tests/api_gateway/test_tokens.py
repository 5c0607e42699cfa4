import base64
import json
import time
from datetime import UTC, datetime

import jwt
import pytest

from services.api_gateway.accounts import epoch_micros
from services.api_gateway.errors import InvalidToken, TokenExpired
from services.api_gateway.principal import AuthMethod
from services.api_gateway.tokens import (
    PASSWORD_VERSION_CLAIM,
    TokenService,
)
from shared.keys import generate_private_key, load_private_key, public_key_text

ISSUER = "test-gateway"
AUDIENCE = "test-api"


def service(private_key: str | None = None, **options) -> TokenService:
    return TokenService(
        private_key=private_key or generate_private_key(),
        issuer=ISSUER,
        audience=AUDIENCE,
        ttl_seconds=options.pop("ttl_seconds", 900),
        **options,
    )


def forge(claims: dict, private_key: str, **headers) -> str:
    key = load_private_key(private_key)
    from shared.keys import key_id

    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": key_id(key), **headers})


def claims(**overrides) -> dict:
    now = int(time.time())
    values = {
        "sub": "alice",
        "roles": ["trading"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": "j1",
    }
    values.update(overrides)
    return {k: v for k, v in values.items() if v is not None}


def test_issued_token_carries_every_required_claim_and_a_kid():
    tokens = service(ttl_seconds=120)
    issued = tokens.issue(username="alice", roles=["trading", "market"])
    header = jwt.get_unverified_header(issued.token)
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA"
    assert header["kid"] == tokens.kid
    assert {"sub", "roles", "iat", "nbf", "exp", "iss", "aud", "jti"} <= set(payload)
    assert payload["exp"] - payload["iat"] == 120
    assert (payload["sub"], payload["roles"], payload["jti"]) == (
        "alice",
        ["trading", "market"],
        issued.jti,
    )


def test_valid_token_names_the_caller():
    tokens = service()
    principal = tokens.verify(tokens.issue(username="alice", roles=["trading"]).token)
    assert principal.username == "alice"
    assert principal.roles == ("trading",)
    assert principal.auth_method is AuthMethod.PASSWORD


def test_token_signed_with_the_previous_key_stays_valid_during_rotation():
    old_key = generate_private_key()
    old_token = service(old_key).issue(username="alice", roles=[]).token
    rotated = service(previous_public_keys=[public_key_text(load_private_key(old_key))])
    assert rotated.verify(old_token).username == "alice"
    assert len(rotated.jwks()["keys"]) == 2
    assert rotated.jwks()["keys"][0]["kid"] == rotated.kid


def test_token_of_a_retired_key_is_rejected():
    old_token = service().issue(username="alice", roles=[]).token
    with pytest.raises(InvalidToken, match="key"):
        service().verify(old_token)


def test_tampered_token_is_rejected():
    tokens = service()
    token = tokens.issue(username="alice", roles=["trading"]).token
    header, payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["roles"] = ["admin"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(f"{header}.{forged_payload}.{signature}")


def test_expired_token_is_rejected_as_expired():
    key = generate_private_key()
    token = forge(claims(exp=int(time.time()) - 10, iat=int(time.time()) - 100), key)
    with pytest.raises(TokenExpired):
        service(key).verify(token)


def test_cached_token_is_still_rejected_once_it_expires():
    tokens = service(ttl_seconds=60)
    issued = tokens.issue(username="alice", roles=[])
    tokens.verify(issued.token)
    with pytest.raises(TokenExpired):
        tokens.verify(issued.token, now=issued.expires_at + 1)


def test_alg_none_token_is_rejected():
    tokens = service()
    token = jwt.encode(claims(), key=None, algorithm="none", headers={"kid": tokens.kid})
    with pytest.raises(InvalidToken) as refused:
        tokens.verify(token)
    assert str(refused.value) == "the access token uses an algorithm this gateway does not accept"


def test_hs256_token_keyed_with_the_public_key_is_rejected():
    key = generate_private_key()
    tokens = service(key)
    public = public_key_text(load_private_key(key)).encode()
    token = jwt.encode(claims(), public, algorithm="HS256", headers={"kid": tokens.kid})
    with pytest.raises(InvalidToken, match="algorithm"):
        tokens.verify(token)


def test_token_signed_by_another_key_under_our_kid_is_rejected():
    tokens = service()
    other = load_private_key(generate_private_key())
    token = jwt.encode(claims(), other, algorithm="EdDSA", headers={"kid": tokens.kid})
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(token)


def test_token_for_another_audience_is_rejected():
    key = generate_private_key()
    with pytest.raises(InvalidToken, match="not meant"):
        service(key).verify(forge(claims(aud="someone-else"), key))


def test_token_from_another_issuer_is_rejected():
    key = generate_private_key()
    with pytest.raises(InvalidToken, match="issued"):
        service(key).verify(forge(claims(iss="someone-else"), key))


@pytest.mark.parametrize("claim", ["sub", "roles", "iat", "nbf", "exp", "iss", "aud", "jti"])
def test_token_missing_a_required_claim_is_rejected(claim):
    key = generate_private_key()
    with pytest.raises(InvalidToken) as refused:
        service(key).verify(forge(claims(**{claim: None}), key))
    assert str(refused.value) == f"the access token lacks the '{claim}' claim"


@pytest.mark.parametrize(
    ("claim", "value"),
    [("sub", 42), ("sub", ["alice"]), ("sub", {"name": "alice"}), ("jti", 7), ("jti", ["j1"])],
)
def test_token_whose_sub_or_jti_is_not_a_string_is_rejected(claim, value):
    key = generate_private_key()
    with pytest.raises(InvalidToken) as refused:
        service(key).verify(forge(claims(**{claim: value}), key))
    assert str(refused.value) == "the access token's sub and jti claims must be strings"


def test_verified_tokens_are_cached_up_to_the_bound_dropping_the_oldest():
    tokens = service(cache_size=3)
    issued = [tokens.issue(username=f"user-{n}", roles=["trading"]).token for n in range(5)]
    for token in issued:
        assert tokens.verify(token).username.startswith("user-")
    assert list(tokens._cache) == issued[2:]
    # Re-verifying an evicted token works (it is decoded again) and evicts the next oldest.
    assert tokens.verify(issued[0]).username == "user-0"
    assert list(tokens._cache) == [issued[3], issued[4], issued[0]]


def test_a_cache_of_size_zero_caches_nothing():
    tokens = service(cache_size=0)
    token = tokens.issue(username="alice", roles=["trading"]).token
    assert tokens.verify(token).username == "alice"
    assert len(tokens._cache) == 0


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, [1], ["trading", None], 7])
def test_token_with_roles_that_are_not_a_list_of_strings_is_rejected(roles):
    key = generate_private_key()
    with pytest.raises(InvalidToken) as refused:
        service(key).verify(forge(claims(roles=roles), key))
    assert str(refused.value) == "the access token's roles claim must be a list of strings"


def test_a_token_carries_the_version_of_the_password_its_login_proved():
    tokens = service()
    changed_at = datetime(2025, 1, 15, 12, 0, 0, 1, tzinfo=UTC)
    version = epoch_micros(changed_at)
    assert version == 1736942400_000001
    issued = tokens.issue(username="alice", roles=["trading"], password_version=version)
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert payload[PASSWORD_VERSION_CLAIM] == version
    assert tokens.verify(issued.token).password_version == version
    # Without a version (an identity service that does not say): no claim, None.
    unversioned = tokens.issue(username="alice", roles=["trading"]).token
    assert PASSWORD_VERSION_CLAIM not in jwt.decode(
        unversioned, options={"verify_signature": False}
    )
    assert tokens.verify(unversioned).password_version is None


@pytest.mark.parametrize("version", ["1736942400000001", 1.5, True, -1, [1]])
def test_a_token_with_a_malformed_password_version_is_rejected(version):
    key = generate_private_key()
    with pytest.raises(InvalidToken, match=PASSWORD_VERSION_CLAIM):
        service(key).verify(forge(claims(**{PASSWORD_VERSION_CLAIM: version}), key))


def test_garbage_is_rejected_as_malformed():
    with pytest.raises(InvalidToken, match="malformed"):
        service().verify("not-a-jwt")


def test_a_token_carries_the_access_version_of_its_login_as_acv():
    tokens = service()
    issued = tokens.issue(username="alice", roles=["trading"], access_version=42)
    assert jwt.decode(issued.token, options={"verify_signature": False})["acv"] == 42
    assert tokens.verify(issued.token).access_version == 42
    # A user with no access change yet: 0, which every later change exceeds.
    first = tokens.issue(username="bob", roles=["trading"])
    assert jwt.decode(first.token, options={"verify_signature": False})["acv"] == 0
    assert tokens.verify(first.token).access_version == 0


@pytest.mark.parametrize("version", ["7", 1.5, True, -1])
def test_a_token_with_a_malformed_access_version_is_rejected(version):
    key = generate_private_key()
    with pytest.raises(InvalidToken) as refused:
        service(key).verify(forge(claims(acv=version), key))
    assert str(refused.value) == "the access token's acv claim must be a whole number"
