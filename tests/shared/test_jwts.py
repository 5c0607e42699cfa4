"""One way to verify the EdDSA JWTs the gateway signs: key by kid, EdDSA only, claims."""

import time

import jwt
import pytest

from shared import jwts
from shared.keys import generate_private_key, key_id, load_private_key


def claims(**changes) -> dict:
    now = int(time.time())
    values = {"iss": "issuer", "aud": "audience", "sub": "alice", "iat": now, "exp": now + 60}
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def sign(key, payload=None, **header) -> str:
    return jwt.encode(
        claims() if payload is None else payload,
        key,
        algorithm="EdDSA",
        headers={"kid": key_id(key), **header},
    )


def decode(token: str, ring: jwts.KeyRing, **rules) -> dict:
    rules = {"audience": "audience", "issuer": "issuer", "required": ["sub", "exp"], **rules}
    return jwts.decode(token, ring, **rules)


@pytest.fixture
def current():
    return load_private_key(generate_private_key())


@pytest.fixture
def previous():
    return load_private_key(generate_private_key())


def test_a_token_of_the_current_or_a_previous_key_verifies(current, previous):
    ring = jwts.KeyRing([current.public_key(), previous.public_key(), current.public_key()])
    assert len(ring) == 2
    assert [jwk["kid"] for jwk in ring.jwks()] == [key_id(current), key_id(previous)]
    assert decode(sign(current), ring)["sub"] == "alice"
    assert decode(sign(previous), ring)["sub"] == "alice"


def test_the_algorithm_is_refused_before_any_key_is_looked_up(current):
    ring = jwts.KeyRing([current.public_key()])
    forged = jwt.encode(claims(), None, algorithm="none", headers={"kid": "nobody"})
    with pytest.raises(jwts.AlgorithmRefused, match="not allowed"):
        decode(forged, ring)


@pytest.mark.parametrize(
    ("token", "error"),
    [
        (lambda key, other: "not-a-jwt", jwts.MalformedJwt),
        (lambda key, other: sign(other), jwts.UnknownKey),
        (lambda key, other: sign(other, kid=key_id(key)), jwts.BadSignature),
        (lambda key, other: sign(key, claims(exp=int(time.time()) - 10)), jwts.Expired),
        (lambda key, other: sign(key, claims(nbf=int(time.time()) + 600)), jwts.NotYetValid),
        (lambda key, other: sign(key, claims(aud="another")), jwts.WrongAudience),
        (lambda key, other: sign(key, claims(iss="another")), jwts.WrongIssuer),
        (lambda key, other: sign(key, claims(sub=5)), jwts.WrongClaimType),
        (lambda key, other: sign(key, claims(jti=5)), jwts.WrongClaimType),
        (lambda key, other: sign(key, claims(iat="yesterday")), jwts.InvalidJwt),
    ],
    ids=[
        "malformed",
        "unknown-kid",
        "bad-signature",
        "expired",
        "early",
        "aud",
        "iss",
        "sub",
        "jti",
        "other",
    ],
)
def test_each_fault_is_named(current, previous, token, error):
    with pytest.raises(error):
        decode(token(current, previous), jwts.KeyRing([current.public_key()]))


def test_a_missing_claim_is_named(current):
    with pytest.raises(jwts.MissingClaim) as caught:
        decode(sign(current, claims(sub=None)), jwts.KeyRing([current.public_key()]))
    assert caught.value.claim == "sub"


def test_the_type_is_checked_when_asked(current):
    ring = jwts.KeyRing([current.public_key()])
    with pytest.raises(jwts.WrongType):
        decode(sign(current, typ="JWT"), ring, typ="lct-assertion+jwt")
    assert decode(sign(current, typ="lct-assertion+jwt"), ring, typ="lct-assertion+jwt")


def test_the_leeway_forgives_a_little_expiry(current):
    token = sign(current, claims(exp=int(time.time()) - 2))
    assert decode(token, jwts.KeyRing([current.public_key()]), leeway=30)["sub"] == "alice"


@pytest.mark.parametrize("typ", ["JWT", "zz+jwt", "lct-assertion+jwt2", None])
def test_a_token_of_another_typ_or_none_is_refused_when_a_typ_is_expected(current, typ):
    ring = jwts.KeyRing([current.public_key()])
    token = sign(current, typ=typ)  # PyJWT leaves out a typ of None
    assert jwt.get_unverified_header(token).get("typ") == typ
    with pytest.raises(jwts.WrongType, match="the token's typ is not lct-assertion\\+jwt"):
        decode(token, ring, typ="lct-assertion+jwt")
    assert decode(sign(current, typ="lct-assertion+jwt"), ring, typ="lct-assertion+jwt")


def test_without_a_leeway_a_token_is_expired_at_its_exp_second(current):
    while time.time() % 1 > 0.5:  # well inside one second, so `exp` is this second
        time.sleep(0.1)
    now = int(time.time())
    token = sign(current, claims(iat=now - 60, exp=now))
    with pytest.raises(jwts.Expired):
        decode(token, jwts.KeyRing([current.public_key()]))
    assert decode(token, jwts.KeyRing([current.public_key()]), leeway=5)["exp"] == now
