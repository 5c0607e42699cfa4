import time

import jwt
import pytest
from pydantic import SecretStr

from shared.assertion import (
    ASSERTION_HEADER,
    AssertionSigner,
    AssertionVerifier,
    InvalidAssertionError,
    apply_verifier_keys,
)
from shared.keys import generate_private_key, key_id, load_private_key, public_key_text


@pytest.fixture
def keypair():
    private = generate_private_key()
    return private, public_key_text(load_private_key(private))


def test_valid_assertion_names_the_caller(keypair):
    private, public = keypair
    token, _ = AssertionSigner(private).sign(
        username="alice", roles=["trading"], auth_method="password", service="trading"
    )
    caller = AssertionVerifier([public], "trading").verify_headers({ASSERTION_HEADER: token})
    assert (caller.username, caller.roles, caller.auth_method) == (
        "alice",
        ("trading",),
        "password",
    )


def test_missing_assertion_is_refused(keypair):
    with pytest.raises(InvalidAssertionError, match="missing"):
        AssertionVerifier([keypair[1]], "trading").verify_headers({})


def test_assertion_for_another_service_is_refused(keypair):
    private, public = keypair
    token, _ = AssertionSigner(private).sign(
        username="alice", roles=["admin"], auth_method="password", service="market"
    )
    with pytest.raises(InvalidAssertionError):
        AssertionVerifier([public], "trading").verify(token)


def test_assertion_signed_by_another_key_is_refused(keypair):
    token, _ = AssertionSigner(generate_private_key()).sign(
        username="mallory", roles=["admin"], auth_method="password", service="trading"
    )
    with pytest.raises(InvalidAssertionError, match="unknown key"):
        AssertionVerifier([keypair[1]], "trading").verify(token)


def test_an_expired_assertion_never_seen_before_is_refused_as_expired(keypair):
    private, public = keypair
    signer = AssertionSigner(private, ttl_seconds=30)
    verifier = AssertionVerifier([public], "trading", leeway_seconds=0)
    # Signed 35 s ago: expired by the real clock, which the signature check reads.
    token, _ = signer.sign(
        username="a", roles=[], auth_method="password", service="trading", now=time.time() - 35
    )
    with pytest.raises(InvalidAssertionError) as refused:
        verifier.verify(token)
    assert str(refused.value) == "identity assertion expired"


def test_expired_assertion_is_refused_even_when_cached(keypair):
    private, public = keypair
    # A lifetime of whole seconds: one second could end before the first check on a busy host.
    signer = AssertionSigner(private, ttl_seconds=30)
    verifier = AssertionVerifier([public], "trading", leeway_seconds=0)
    token, _ = signer.sign(username="a", roles=[], auth_method="password", service="trading")
    verifier.verify(token)
    with pytest.raises(InvalidAssertionError, match="expired"):
        verifier.verify(token, now=time.time() + 35)


def test_alg_none_assertion_is_refused(keypair):
    forged = jwt.encode(
        {
            "iss": "legacycointrader-gateway",
            "aud": "trading",
            "sub": "x",
            "roles": ["admin"],
            "auth": "password",
            "iat": int(time.time()),
            "exp": int(time.time()) + 60,
        },
        key=None,
        algorithm="none",
        headers={"typ": "lct-assertion+jwt"},
    )
    with pytest.raises(InvalidAssertionError):
        AssertionVerifier([keypair[1]], "trading").verify(forged)


def sign_with(private: str) -> str:
    token, _ = AssertionSigner(private).sign(
        username="alice", roles=["trading"], auth_method="password", service="trading"
    )
    return token


def secret_values(**values: str | None) -> dict[str, SecretStr | None]:
    return {name: SecretStr(v) if v is not None else None for name, v in values.items()}


def test_after_a_rotation_the_new_and_the_previous_key_verify_and_the_older_not(keypair):
    oldest, oldest_public = keypair
    previous, current = generate_private_key(), generate_private_key()
    verifier = AssertionVerifier([oldest_public], "trading")
    apply_verifier_keys(
        verifier,
        secret_values(
            GATEWAY_ASSERTION_PUBLIC_KEY=public_key_text(load_private_key(current)),
            GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY=public_key_text(load_private_key(previous)),
        ),
    )
    assert verifier.verify(sign_with(current)).username == "alice"
    assert verifier.verify(sign_with(previous)).username == "alice"
    with pytest.raises(InvalidAssertionError, match="unknown key"):
        verifier.verify(sign_with(oldest))


def test_a_bad_rotated_key_keeps_the_keys_in_use_and_names_the_secret(keypair):
    private, public = keypair
    verifier = AssertionVerifier([public], "trading")
    with pytest.raises(ValueError, match="GATEWAY_ASSERTION_PUBLIC_KEY or") as refused:
        apply_verifier_keys(
            verifier, secret_values(GATEWAY_ASSERTION_PUBLIC_KEY="garbage-not-a-key")
        )
    assert "garbage-not-a-key" not in str(refused.value)
    assert verifier.verify(sign_with(private)).username == "alice"
    with pytest.raises(ValueError, match="GATEWAY_ASSERTION_PUBLIC_KEY is no longer set"):
        apply_verifier_keys(verifier, secret_values(GATEWAY_ASSERTION_PUBLIC_KEY=None))


# --- claims, leeway and the cache: values written out, not taken from the module -------


def forged(private: str, *, omit: str | None = None, **changes: object) -> str:
    """An assertion signed with `private` like the gateway's, without `omit`, with `changes`."""
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "legacycointrader-gateway",
        "aud": "trading",
        "sub": "alice",
        "roles": ["trading"],
        "auth": "password",
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        **changes,
    }
    claims.pop(omit or "", None)
    key = load_private_key(private)
    return jwt.encode(
        claims, key, algorithm="EdDSA", headers={"kid": key_id(key), "typ": "lct-assertion+jwt"}
    )


def test_the_forged_helper_makes_assertions_that_verify(keypair):
    private, public = keypair
    assert AssertionVerifier([public], "trading").verify(forged(private)).username == "alice"


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "roles", "auth", "iat", "exp"])
def test_an_assertion_lacking_a_required_claim_is_refused(keypair, claim):
    private, public = keypair
    with pytest.raises(InvalidAssertionError) as refused:
        AssertionVerifier([public], "trading").verify(forged(private, omit=claim))
    assert str(refused.value) == (
        f'invalid identity assertion: Token is missing the "{claim}" claim'
    )


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, [1], ["trading", None], 7])
def test_an_assertion_whose_roles_are_not_a_list_of_strings_is_refused(keypair, roles):
    private, public = keypair
    with pytest.raises(InvalidAssertionError) as refused:
        AssertionVerifier([public], "trading").verify(forged(private, roles=roles))
    assert str(refused.value) == "identity assertion roles must be a list of strings"


@pytest.mark.parametrize("claim", ["sub", "jti"])
def test_an_assertion_whose_sub_or_jti_is_not_a_string_is_refused(keypair, claim):
    private, public = keypair
    with pytest.raises(InvalidAssertionError, match="must be a string"):
        AssertionVerifier([public], "trading").verify(forged(private, **{claim: 42}))


@pytest.mark.parametrize(
    ("seconds_past_exp", "accepted"), [(2, True), (4, True), (5, False), (8, False)]
)
def test_the_verifier_accepts_an_assertion_less_than_five_seconds_past_its_exp(
    keypair, seconds_past_exp, accepted
):
    private, public = keypair
    exp = int(time.time()) - seconds_past_exp
    token = forged(private, iat=exp - 60, nbf=exp - 60, exp=exp)
    verifier = AssertionVerifier([public], "trading")
    if accepted:
        assert verifier.verify(token).username == "alice"
    else:
        with pytest.raises(InvalidAssertionError, match="expired"):
            verifier.verify(token)


def test_a_cached_assertion_is_accepted_within_the_leeway_and_refused_beyond(keypair):
    private, public = keypair
    verifier = AssertionVerifier([public], "trading", leeway_seconds=5)
    token = forged(private)
    expires = verifier.verify(token).expires_at
    assert verifier.verify(token, now=expires + 4).username == "alice"
    with pytest.raises(InvalidAssertionError, match="expired"):
        verifier.verify(token, now=expires + 5)
    # Evicted once found expired: a later check does not find it cached.
    assert token not in verifier._cache


def test_without_leeway_an_assertion_is_refused_at_its_exp(keypair):
    private, public = keypair
    exp = int(time.time()) - 2
    token = forged(private, iat=exp - 60, nbf=exp - 60, exp=exp)
    with pytest.raises(InvalidAssertionError, match="expired"):
        AssertionVerifier([public], "trading", leeway_seconds=0).verify(token)


def test_the_assertion_cache_is_bounded_and_drops_the_oldest(keypair):
    private, public = keypair
    verifier = AssertionVerifier([public], "trading", cache_size=3)
    tokens = [forged(private, sub=f"user-{n}") for n in range(5)]
    for token in tokens:
        verifier.verify(token)
    assert list(verifier._cache) == tokens[2:]
    assert [verifier._cache[t].username for t in tokens[2:]] == ["user-2", "user-3", "user-4"]


def test_a_signed_assertion_holds_exactly_these_claims(keypair):
    private, _ = keypair
    token, expires = AssertionSigner(private, ttl_seconds=30).sign(
        username="alice",
        roles=["trading", "market"],
        auth_method="api_key",
        service="market",
        key_id="key-7",
        now=1_800_000_000.9,
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims == {
        "iss": "legacycointrader-gateway",
        "aud": "market",
        "sub": "alice",
        "roles": ["trading", "market"],
        "auth": "api_key",
        "iat": 1_800_000_000,
        "nbf": 1_800_000_000,
        "exp": 1_800_000_030,
        "kid": "key-7",
    }
    assert expires == 1_800_000_030.0
    assert jwt.get_unverified_header(token)["typ"] == "lct-assertion+jwt"


def test_the_api_key_id_reaches_the_verified_caller_and_is_absent_without_one(keypair):
    private, public = keypair
    signer, verifier = AssertionSigner(private), AssertionVerifier([public], "trading")
    with_key, _ = signer.sign(
        username="bot", roles=["trading"], auth_method="api_key", service="trading", key_id="k1"
    )
    without, _ = signer.sign(
        username="alice", roles=["trading"], auth_method="password", service="trading"
    )
    assert verifier.verify(with_key).key_id == "k1"
    assert verifier.verify(without).key_id is None
    assert "kid" not in jwt.decode(without, options={"verify_signature": False})


def test_a_verified_assertion_is_served_from_the_cache_after_a_key_rotation(keypair):
    # Verified once with a trusted key, it stays accepted until it expires, even after the
    # key ring changed (the comment in replace_keys); an unverified one is refused.
    private, public = keypair
    verifier = AssertionVerifier([public], "trading")
    token = forged(private)
    assert verifier.verify(token).username == "alice"
    other = public_key_text(load_private_key(generate_private_key()))
    verifier.replace_keys([other])
    assert verifier.verify(token).username == "alice"
    with pytest.raises(InvalidAssertionError, match="unknown key"):
        verifier.verify(forged(private, sub="bob"))
