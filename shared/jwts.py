"""Verifying the EdDSA JWTs the gateway signs (access tokens and identity assertions).

One way to read them: the key by `kid` among the current and previous public keys, EdDSA
only, the required claims, a leeway. What a token's claims must say beyond that, and how a
failure is worded to the caller, belongs to each reader: the errors here only say what
failed (their message is PyJWT's, or the same words PyJWT uses, and never holds a key).
"""

from collections.abc import Iterable, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.keys import key_id, public_jwk

ALGORITHM = "EdDSA"
ALGORITHMS = [ALGORITHM]


class JwtError(Exception):
    """A JWT that does not verify."""


class MalformedJwt(JwtError):
    """The header cannot be read: not a JWT."""


class WrongType(JwtError):
    """The header's `typ` is not the one the reader expects."""


class AlgorithmRefused(JwtError):
    """The header names no algorithm or one other than EdDSA."""


class UnknownKey(JwtError):
    """The header's `kid` names none of the keys."""


class BadSignature(JwtError):
    """The signature does not verify with the key the `kid` names."""


class Expired(JwtError):
    """Past its `exp`, beyond the leeway."""


class NotYetValid(JwtError):
    """Before its `nbf` or `iat`, beyond the leeway."""


class WrongAudience(JwtError):
    """The `aud` claim is not the reader's."""


class WrongIssuer(JwtError):
    """The `iss` claim is not the expected issuer."""


class MissingClaim(JwtError):
    """A required claim is absent."""

    def __init__(self, message: str, *, claim: str) -> None:
        super().__init__(message)
        self.claim = claim


class WrongClaimType(JwtError):
    """A registered claim PyJWT checks the type of (`sub`, `jti`) is not a string."""


class InvalidJwt(JwtError):
    """Any other reason PyJWT refuses the token."""


# PyJWT's errors to ours, most specific first; anything else is `InvalidJwt`.
PYJWT_ERRORS: tuple[tuple[type[jwt.PyJWTError], type[JwtError]], ...] = (
    (jwt.ExpiredSignatureError, Expired),
    (jwt.ImmatureSignatureError, NotYetValid),
    (jwt.InvalidAudienceError, WrongAudience),
    (jwt.InvalidIssuerError, WrongIssuer),
    (jwt.InvalidSignatureError, BadSignature),
    (jwt.InvalidAlgorithmError, AlgorithmRefused),
    (jwt.exceptions.InvalidSubjectError, WrongClaimType),
    (jwt.exceptions.InvalidJTIError, WrongClaimType),
)


class KeyRing:
    """Ed25519 public keys by `kid` (their RFC 7638 thumbprint), the current one first."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key in keys:
            self._keys.setdefault(key_id(key), key)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, kid: object) -> Ed25519PublicKey | None:
        """Return the key a header's `kid` names, or None."""
        return self._keys.get(str(kid))

    def jwks(self) -> list[dict[str, str]]:
        """Return the keys as JWKs, current first."""
        return [public_jwk(key) for key in self._keys.values()]


def decode(
    token: str,
    keys: KeyRing,
    *,
    audience: str,
    issuer: str,
    required: Sequence[str],
    leeway: float = 0,
    typ: str | None = None,
) -> dict[str, Any]:
    """Verify a JWT and return its claims, or raise the `JwtError` naming the first fault.

    In this order: the header reads, its `typ` is `typ` (when given), its `alg` is EdDSA,
    its `kid` names one of `keys`; then the signature, `exp`, `nbf` and `iat` (with
    `leeway`), `aud`, `iss` and the `required` claims.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise MalformedJwt(str(exc)) from exc
    if typ is not None and header.get("typ") != typ:
        raise WrongType(f"the token's typ is not {typ}")
    if header.get("alg") not in ALGORITHMS:
        # Checked before any key is looked up; in PyJWT's words, as if it had refused it.
        raise AlgorithmRefused(
            "The specified alg value is not allowed"
            if "alg" in header
            else "Algorithm not specified"
        )
    key = keys.get(header.get("kid"))
    if key is None:
        raise UnknownKey("the token's kid names no known key")
    try:
        return jwt.decode(
            token,
            key,
            algorithms=ALGORITHMS,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": list(required)},
        )
    except jwt.MissingRequiredClaimError as exc:
        raise MissingClaim(str(exc), claim=exc.claim) from exc
    except jwt.PyJWTError as exc:
        for theirs, ours in PYJWT_ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise InvalidJwt(str(exc)) from exc
