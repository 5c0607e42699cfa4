"""The gateway's bearer tokens: EdDSA JWTs, their JWKS, and a cache of verified ones."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

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
}


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
        self._key = load_private_key(private_key)
        self.kid = key_id(self._key)
        self._keys = jwts.KeyRing(
            [self._key.public_key(), *(load_public_key(text) for text in previous_public_keys)]
        )
        self.issuer = issuer
        self.audience = audience
        self.ttl_seconds = ttl_seconds
        self._cache: dict[str, Principal] = {}
        self._cache_size = cache_size

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
        issued = int(epoch_seconds() if now is None else now)
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
            claims, self._key, algorithm=jwts.ALGORITHM, headers={"kid": self.kid, "typ": "JWT"}
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
        principal = self._decode(token)
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
        return {"keys": self._keys.jwks()}

    def _decode(self, token: str) -> Principal:
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
