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
from shared.keys import generate_private_key, load_private_key, public_key_text


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


def test_expired_assertion_is_refused_even_when_cached(keypair):
    private, public = keypair
    signer = AssertionSigner(private, ttl_seconds=1)
    verifier = AssertionVerifier([public], "trading", leeway_seconds=0)
    token, _ = signer.sign(username="a", roles=[], auth_method="password", service="trading")
    verifier.verify(token)
    with pytest.raises(InvalidAssertionError, match="expired"):
        verifier.verify(token, now=time.time() + 5)


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
