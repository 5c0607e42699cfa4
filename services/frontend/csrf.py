"""Forms posted before sign-in, without server-side state: a signed, short-lived form pass.

Until a password checks out the frontend keeps nothing for a browser, so loading the login
page over and over costs no memory and cannot push anyone's form or session out. The login
and password forms carry a random nonce as their CSRF token; the browser's session cookie
carries a pass naming the same nonce, when it expires and (after "password expired") whose
password is being changed, signed with a key derived from the session secret. A post counts
only with a genuine, unexpired pass whose nonce it repeats.
"""

import base64
import hmac
import json
import time
from dataclasses import dataclass, field, replace

from pydantic import SecretStr

from services.frontend.sessions import (
    Clock,
    DerivedKeys,
    hmac_b64,
    new_token,
    signature_matches,
)

# A pass is about 150 characters (more with a long username); anything far longer is not
# one of ours and is refused before it is hashed or parsed.
MAX_PASS_CHARS = 1024


@dataclass(frozen=True, slots=True)
class FormPass:
    """What a browser's cookie says about the form it was given."""

    nonce: str = field(repr=False)
    expires_at: int
    # Whose expired password the rotation form is for: it prefills the form, grants nothing.
    pending_username: str | None = None
    # After the password: the gateway's second-step challenge (short-lived, single use), and
    # whether it only allows enrolling a first factor.
    pending_challenge: str | None = field(default=None, repr=False)
    enrol: bool = False

    def matches(self, submitted: str | None) -> bool:
        """Compare a form's CSRF token with the pass's nonce in constant time."""
        if not submitted:
            return False
        return hmac.compare_digest(submitted.encode(), self.nonce.encode())


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class FormPassSigner:
    """Issue form passes and read them back, refusing forged, foreign and expired ones."""

    def __init__(self, secret: SecretStr, *, lifetime: int, clock: Clock = time.time) -> None:
        # A key of its own, so a signed session id can never pass for a form pass.
        self._keys = DerivedKeys(secret, b"lct-frontend-form-pass", clock=clock)
        self.lifetime = lifetime
        self._clock = clock

    def rotate(self, secret: SecretStr, *, activate_at: float = 0.0) -> None:
        """Sign with the rotated secret from `activate_at` on; passes of the one before
        still count."""
        self._keys.rotate(secret, activate_at=activate_at)

    def accept_previous(self, secret: SecretStr | None) -> None:
        """Also accept passes signed with `secret` (SESSION_PREVIOUS_SECRET_KEY)."""
        self._keys.accept_previous(secret)

    def issue(
        self,
        *,
        pending_username: str | None = None,
        pending_challenge: str | None = None,
        enrol: bool = False,
    ) -> FormPass:
        """Return a pass with a fresh nonce."""
        return self.renew(FormPass(new_token(), 0, pending_username, pending_challenge, enrol))

    def renew(self, form_pass: FormPass) -> FormPass:
        """Return the same pass with a fresh expiry: a reloaded form keeps its token."""
        return replace(form_pass, expires_at=int(self._clock()) + self.lifetime)

    def sign(self, form_pass: FormPass) -> str:
        """Return the cookie value for a pass."""
        payload: dict[str, str | int] = {"n": form_pass.nonce, "e": form_pass.expires_at}
        if form_pass.pending_username is not None:
            payload["u"] = form_pass.pending_username
        if form_pass.pending_challenge is not None:
            payload["c"] = form_pass.pending_challenge
            payload["m"] = int(form_pass.enrol)
        body = _encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{hmac_b64(self._keys.current, body)}"

    def unsign(self, value: str) -> FormPass | None:
        """Return the pass of a genuine, unexpired cookie value, else None."""
        if len(value) > MAX_PASS_CHARS:
            return None
        body, _, signature = value.partition(".")
        if not body or not signature_matches(self._keys, body, signature):
            return None
        try:
            payload = json.loads(_decode(body))
        except ValueError:
            return None
        if not isinstance(payload, dict):
            return None
        nonce, expires_at = payload.get("n"), payload.get("e")
        pending = payload.get("u")
        challenge, enrol = payload.get("c"), payload.get("m", 0)
        if not isinstance(nonce, str) or not isinstance(expires_at, int):
            return None
        if pending is not None and not isinstance(pending, str):
            return None
        if challenge is not None and not isinstance(challenge, str):
            return None
        if self._clock() >= expires_at:
            return None
        return FormPass(nonce, expires_at, pending, challenge, enrol == 1)
