import base64

import pytest
from pydantic import SecretStr

from services.frontend.csrf import MAX_PASS_CHARS, FormPass, FormPassSigner
from services.frontend.sessions import CookieSigner, DerivedKeys, hmac_b64
from tests.frontend.conftest import SESSION_SECRET, Clock


@pytest.fixture
def signer(clock: Clock) -> FormPassSigner:
    return FormPassSigner(SESSION_SECRET, lifetime=600, clock=clock)


class TestIssue:
    def test_a_pass_has_a_random_url_safe_nonce_and_an_expiry(self, signer, clock):
        first, second = signer.issue(), signer.issue()
        assert first.nonce != second.nonce
        assert len(first.nonce) >= 43
        assert first.expires_at == int(clock.now) + 600
        assert first.pending_username is None

    def test_renewing_keeps_nonce_and_username_and_pushes_the_expiry(self, signer, clock):
        issued = signer.issue(pending_username="alice")
        clock.advance(500)
        renewed = signer.renew(issued)
        assert renewed.nonce == issued.nonce
        assert renewed.pending_username == "alice"
        assert renewed.expires_at == issued.expires_at + 500

    def test_the_repr_does_not_show_the_nonce(self, signer):
        issued = signer.issue()
        assert issued.nonce not in repr(issued)

    def test_the_repr_does_not_show_the_second_step_challenge(self):
        # The challenge lets its holder take the second step of a sign-in: no log line.
        form_pass = FormPass("a-nonce", 100, "alice", "challenge-b0e1f2", enrol=True)
        assert "challenge-b0e1f2" not in repr(form_pass)
        assert "alice" in repr(form_pass)


class TestSignAndUnsign:
    @pytest.mark.parametrize("username", [None, "alice", "dana.o'brien+ops@example.com"])
    def test_a_signed_pass_reads_back(self, signer, username):
        issued = signer.issue(pending_username=username)
        assert signer.unsign(signer.sign(issued)) == issued

    @pytest.mark.parametrize("enrol", [False, True])
    def test_a_pass_with_a_second_step_challenge_reads_back(self, signer, enrol):
        issued = signer.issue(pending_username="alice", pending_challenge="ch-1", enrol=enrol)
        assert signer.unsign(signer.sign(issued)) == issued

    def test_a_pass_of_1024_characters_is_read(self, signer):
        # The username's length sets the pass's; find one that makes it exactly 1024.
        for length in range(600, 800):
            value = signer.sign(signer.issue(pending_username="u" * length))
            if len(value) == 1024:
                break
        assert len(value) == 1024
        assert signer.unsign(value) is not None
        assert signer.unsign(value + "A") is None

    def test_the_cookie_holds_no_secret(self, signer):
        value = signer.sign(signer.issue())
        assert SESSION_SECRET.get_secret_value() not in value

    def test_a_pass_lives_until_its_expiry(self, signer, clock):
        value = signer.sign(signer.issue())
        clock.advance(599)
        assert signer.unsign(value) is not None
        clock.advance(1)
        assert signer.unsign(value) is None

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda v: "e" + v[1:] if v[0] != "e" else "f" + v[1:],
            lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),
            lambda v: v.split(".")[0],
            lambda v: "",
            lambda v: ".",
            lambda v: v + ".extra",
            lambda v: v[:-2] + "éé",
        ],
        ids=[
            "changed-payload",
            "changed-signature",
            "no-signature",
            "empty",
            "dot-only",
            "extra-part",
            "non-ascii",
        ],
    )
    def test_a_tampered_pass_is_refused(self, signer, tamper):
        assert signer.unsign(tamper(signer.sign(signer.issue()))) is None

    def test_a_pass_signed_with_another_secret_is_refused(self, signer, clock):
        other = FormPassSigner(SecretStr("another-secret-of-at-least-32-bytes!"), lifetime=600)
        assert signer.unsign(other.sign(signer.issue())) is None

    def test_a_pass_that_claims_a_later_expiry_is_refused(self, signer):
        value = signer.sign(signer.issue())
        later = signer.sign(FormPass("x", 2**40))
        # Another pass's signature does not carry over to a changed body.
        assert signer.unsign(later.split(".")[0] + "." + value.split(".")[1]) is None

    def test_a_signed_session_id_is_no_pass_and_a_pass_no_session_id(self, signer):
        session_cookie = CookieSigner(SESSION_SECRET).sign("some-session-id")
        assert signer.unsign(session_cookie) is None
        assert CookieSigner(SESSION_SECRET).unsign(signer.sign(signer.issue())) is None

    def test_an_oversized_value_is_refused_unread(self, signer):
        assert signer.unsign("a" * (MAX_PASS_CHARS + 1) + ".sig") is None


def signed_with_the_form_pass_key(body: bytes) -> str:
    """Sign any body as a frontend holding the session secret would (its pass key derived
    for the purpose written out here)."""
    text = base64.urlsafe_b64encode(body).rstrip(b"=").decode()
    key = DerivedKeys(SESSION_SECRET, b"lct-frontend-form-pass").current
    return f"{text}.{hmac_b64(key, text)}"


class TestGenuineButMalformed:
    """A pass signed with the right key whose body is not one this signer writes (another
    release, a leaked key): refused, never an exception."""

    def test_the_helper_signs_like_the_signer(self, signer):
        value = signer.sign(FormPass("a-nonce", 2**40))
        assert signed_with_the_form_pass_key(b'{"n":"a-nonce","e":1099511627776}') == value
        assert signer.unsign(value) == FormPass("a-nonce", 2**40)
        challenged = signer.sign(FormPass("a-nonce", 2**40, None, "ch-1", enrol=True))
        assert challenged == signed_with_the_form_pass_key(
            b'{"n":"a-nonce","e":1099511627776,"c":"ch-1","m":1}'
        )

    @pytest.mark.parametrize(
        "body",
        [
            b"not json",
            b"\xff\xfe",
            b"[1, 2]",
            b'"a-nonce"',
            b'{"e": 1099511627776}',
            b'{"n": "a-nonce"}',
            b'{"n": 7, "e": 1099511627776}',
            b'{"n": "a-nonce", "e": "1099511627776"}',
            b'{"n": "a-nonce", "e": 1099511627776, "u": 5}',
            b'{"n": "a-nonce", "e": 1099511627776, "c": ["x"], "m": 1}',
        ],
        ids=[
            "not-json",
            "not-utf8",
            "a-list",
            "a-string",
            "no-nonce",
            "no-expiry",
            "nonce-a-number",
            "expiry-a-string",
            "username-a-number",
            "challenge-a-list",
        ],
    )
    def test_a_well_signed_malformed_pass_is_refused(self, signer, body):
        assert signer.unsign(signed_with_the_form_pass_key(body)) is None


class TestMatches:
    def test_the_pass_nonce_matches(self, signer):
        issued = signer.issue()
        assert issued.matches(issued.nonce)

    @pytest.mark.parametrize("submitted", [None, "", "wrong", "x" * 43, "é" * 43])
    def test_anything_else_does_not(self, signer, submitted):
        assert not signer.issue().matches(submitted)

    def test_another_passs_nonce_does_not(self, signer):
        assert not signer.issue().matches(signer.issue().nonce)
