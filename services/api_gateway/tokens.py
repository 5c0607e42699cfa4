"""The gateway's bearer tokens: EdDSA JWTs, their JWKS, and a cache of verified ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from services.api_gateway.errors import InvalidToken, TokenExpired
from services.api_gateway.principal import AuthMethod, Principal
from shared import jwts
from shared.clock import epoch_seconds
from shared.keys import key_id, load_private_key, load_public_key

REQUIRED_CLAIMS = ["sub", "roles", "iat", "nbf", "exp", "iss", "aud", "jti"]
# The password's version: when the password the login proved was set, in integer
# microseconds since the epoch. A token whose version is older than the user's last
# password change is refused, whatever second it was issued in.
PASSWORD_VERSION_CLAIM = "pwv"  # noqa: S105  # nosec B105 - a claim name
# The identity service's change-feed position of the user's last access change when the
# login was checked: a deactivation after it has a higher one, whatever the clocks say.
ACCESS_VERSION_CLAIM = "acv"
# Why a token does not verify, in the caller's words (expiry and missing claims apart).
_REFUSALS: dict[type[jwts.JwtError], str] = {
    jwts.MalformedJwt: "the access token is malformed",
    jwts.AlgorithmRefused: "the access token uses an algorithm this gateway does not accept",
    jwts.UnknownKey: "the access token was signed by a key this gateway does not know",
    jwts.WrongAudience: "the access token is not meant for this gateway",
    jwts.WrongIssuer: "the access token was not issued by this gateway",
    jwts.NotYetValid: "the access token is not valid yet",
    jwts.BadSignature: "the access token signature does not verify",
    jwts.WrongClaimType: "the access token's sub and jti claims must be strings",
}


@dataclass(frozen=True, slots=True)
class _SigningKey:
    key: Ed25519PrivateKey
    kid: str


def _signing_key(private_key: str) -> _SigningKey:
    key = load_private_key(private_key)
    return _SigningKey(key=key, kid=key_id(key))


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly signed access token."""

    token: str
    jti: str
    issued_at: int
    expires_at: int


class TokenService:
    """Issue and verify access tokens; remembers verified ones until they expire."""

    def __init__(
        self,
        *,
        private_key: str,
        issuer: str,
        audience: str,
        ttl_seconds: int,
        previous_public_keys: Iterable[str] = (),
        cache_size: int = 10_000,
    ) -> None:
        self._signing = _signing_key(private_key)
        # A rotated key verifies at once but signs only from its activation time on, so
        # every other gateway has learnt it before a token signed with it reaches them.
        self._pending: tuple[_SigningKey, float] | None = None
        self._previous = [load_public_key(text) for text in previous_public_keys]
        # Keys that signed here before a rotation, kept until their last token expires.
        self._retired: list[tuple[Ed25519PublicKey, float]] = []
        self._keys = self._ring(epoch_seconds())
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, Principal] = {}
        self._cache_size = cache_size

    @property
    def kid(self) -> str:
        """Return the `kid` new tokens are signed with."""
        return self._signing.kid

    def rotate(self, private_key: str, *, activate_at: float) -> None:
        """Verify with a new signing key now and sign with it from `activate_at` on."""
        new = _signing_key(private_key)
        if new.kid == self._signing.kid:
            self._pending = None
        elif self._pending is None or self._pending[0].kid != new.kid:
            self._pending = (new, activate_at)
        self._keys = self._ring(epoch_seconds())

    def set_previous_public_keys(self, public_keys: Iterable[str]) -> None:
        """Replace the previous public keys still accepted (GATEWAY_JWT_PREVIOUS_PUBLIC_KEY)."""
        self._previous = [load_public_key(text) for text in public_keys]
        self._keys = self._ring(epoch_seconds())

    def issue(
        self,
        *,
        username: str,
        roles: Iterable[str],
        password_version: int | None = None,
        access_version: int | None = None,
        now: float | None = None,
    ) -> IssuedToken:
        """Sign a token for a user who just proved the password of `password_version`."""
        current = epoch_seconds() if now is None else now
        signing = self._signing_key(current)
        issued = int(current)
        expires = issued + self.ttl_seconds
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            "sub": username,
            "roles": list(roles),
            "iat": issued,
            "nbf": issued,
            "exp": expires,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": jti,
        }
        if password_version is not None:
            claims[PASSWORD_VERSION_CLAIM] = password_version
        # 0: the user had no access change yet (a later one has a higher number).
        claims[ACCESS_VERSION_CLAIM] = access_version or 0
        token = jwt.encode(
            claims,
            signing.key,
            algorithm=jwts.ALGORITHM,
            headers={"kid": signing.kid, "typ": "JWT"},
        )
        return IssuedToken(token=token, jti=jti, issued_at=issued, expires_at=expires)

    def verify(self, token: str, *, now: float | None = None) -> Principal:
        """Return the caller a valid, unexpired token names (revocation is checked by the caller)."""
        current = epoch_seconds() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at is not None and cached.expires_at > current:
                return cached
            del self._cache[token]
            raise TokenExpired("the access token has expired; request a new one at /auth/token")
        principal = self._decode(token, current)
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                # Drop the oldest entry; dicts keep insertion order.
                del self._cache[next(iter(self._cache))]
            self._cache[token] = principal
        return principal

    def forget(self, token: str) -> None:
        """Drop a token from the verified cache (after logout)."""
        self._cache.pop(token, None)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """Return the public keys that verify our tokens, current first."""
        self._refresh(epoch_seconds())
        return {"keys": self._keys.jwks()}

    def _signing_key(self, now: float) -> _SigningKey:
        pending = self._pending
        if pending is not None and now >= pending[1]:
            retired = self._signing
            self._signing, self._pending = pending[0], None
            # A token signed a moment ago lives `ttl_seconds`, plus the leeway others allow.
            self._retired.append((retired.key.public_key(), now + self.ttl_seconds + 60))
            self._keys = self._ring(now)
        return self._signing

    def _refresh(self, now: float) -> None:
        # Promotes a due key, and drops retired keys whose tokens have all expired.
        self._signing_key(now)
        if any(until <= now for _, until in self._retired):
            self._keys = self._ring(now)

    def _ring(self, now: float) -> jwts.KeyRing:
        self._retired = [(key, until) for key, until in self._retired if until > now]
        keys = [self._signing.key.public_key()]
        if self._pending is not None:
            keys.append(self._pending[0].key.public_key())
        keys.extend(self._previous)
        keys.extend(key for key, _ in self._retired)
        return jwts.KeyRing(keys)

    def _decode(self, token: str, now: float) -> Principal:
        self._refresh(now)
        try:
            claims = jwts.decode(
                token,
                self._keys,
                audience=self.audience,
                issuer=self.issuer,
                required=REQUIRED_CLAIMS,
                leeway=0,
            )
        except jwts.Expired:
            raise TokenExpired(
                "the access token has expired; request a new one at /auth/token"
            ) from None
        except jwts.MissingClaim as exc:
            raise InvalidToken(f"the access token lacks the {exc.claim!r} claim") from None
        except jwts.JwtError as exc:
            raise InvalidToken(_REFUSALS.get(type(exc), "the access token is invalid")) from None
        roles = claims["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidToken("the access token's roles claim must be a list of strings")
        # PyJWT refuses these itself (WrongClaimType); kept should a version stop checking.
        if not isinstance(claims["sub"], str) or not isinstance(claims["jti"], str):
            raise InvalidToken("the access token's sub and jti claims must be strings")
        version = claims.get(PASSWORD_VERSION_CLAIM)
        access = claims.get(ACCESS_VERSION_CLAIM)
        for name, value in ((PASSWORD_VERSION_CLAIM, version), (ACCESS_VERSION_CLAIM, access)):
            if value is not None and (type(value) is not int or value < 0):
                raise InvalidToken(f"the access token's {name} claim must be a whole number")
        return Principal(
            username=claims["sub"],
            roles=tuple(roles),
            auth_method=AuthMethod.PASSWORD,
            jti=claims["jti"],
            expires_at=float(claims["exp"]),
            issued_at=float(claims["iat"]),
            password_version=version,
            access_version=access,
        )
