"""The signed identity assertion the gateway forwards to downstream services.

The gateway signs a short-lived EdDSA JWT naming the caller, with `aud` set to the
service it is calling. Every downstream service verifies it with the gateway's public
assertion key before trusting who is calling. Client-sent identity headers are never
trusted; only this header, and only after verification.
"""

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import jwts
from shared.clock import epoch_seconds
from shared.keys import KeyFormatError, key_id, load_private_key, load_public_key
from shared.secrets import SecretsManager
from shared.secrets.watch import SecretValues, SecretWatcher

ASSERTION_HEADER = "x-identity-assertion"
# The managed secrets downstream services verify assertions with; names, not keys.
PUBLIC_KEY_SECRET = "GATEWAY_ASSERTION_PUBLIC_KEY"  # noqa: S105  # nosec B105
PREVIOUS_PUBLIC_KEY_SECRET = "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"  # noqa: S105  # nosec B105
VERIFIER_KEY_SECRETS = (PUBLIC_KEY_SECRET, PREVIOUS_PUBLIC_KEY_SECRET)
REQUEST_ID_HEADER = "x-request-id"
ISSUER = "legacycointrader-gateway"
TOKEN_TYPE = "lct-assertion+jwt"  # noqa: S105  # nosec B105 - a JOSE `typ`, not a credential
DEFAULT_TTL_SECONDS = 60
REQUIRED_CLAIMS = ["iss", "aud", "sub", "roles", "auth", "iat", "exp"]

# Headers a client could use to claim an identity; the gateway drops them all and
# downstream services ignore them.
IDENTITY_HEADERS = frozenset(
    {
        ASSERTION_HEADER,
        "x-user",
        "x-username",
        "x-user-id",
        "x-user-roles",
        "x-roles",
        "x-auth-user",
        "x-authenticated-user",
        "x-forwarded-user",
        "x-remote-user",
        "remote-user",
        "x-auth-method",
        "x-service-token",
    }
)


# Why an assertion does not verify, in this module's words; anything else gives PyJWT's reason.
_REFUSALS: dict[type[jwts.JwtError], str] = {
    jwts.MalformedJwt: "malformed identity assertion",
    jwts.WrongType: "not an identity assertion",
    jwts.UnknownKey: "identity assertion signed by an unknown key",
    jwts.Expired: "identity assertion expired",
}


class InvalidAssertionError(Exception):
    """The identity assertion is missing, malformed, expired or not for this service."""


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified caller a downstream service may trust."""

    username: str
    roles: tuple[str, ...]
    auth_method: str
    service: str
    key_id: str | None = None
    expires_at: float = 0.0
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _key_ring(public_keys: Iterable[str | Ed25519PublicKey]) -> jwts.KeyRing:
    keys = [load_public_key(k) if isinstance(k, str) else k for k in public_keys]
    if not keys:
        raise ValueError("at least one gateway assertion public key is required")
    return jwts.KeyRing(keys)


class AssertionSigner:
    """Sign assertions for downstream services with the gateway's assertion key."""

    def __init__(
        self, private_key: str | Ed25519PrivateKey, ttl_seconds: int = DEFAULT_TTL_SECONDS
    ):
        self._key = load_private_key(private_key) if isinstance(private_key, str) else private_key
        self._kid = key_id(self._key)
        self.ttl_seconds = ttl_seconds

    @property
    def kid(self) -> str:
        """Return the `kid` (RFC 7638 thumbprint) of the signing key."""
        return self._kid

    def sign(
        self,
        *,
        username: str,
        roles: Iterable[str],
        auth_method: str,
        service: str,
        key_id: str | None = None,
        now: float | None = None,
    ) -> tuple[str, float]:
        """Return a signed assertion and the time it expires."""
        issued = int(now if now is not None else epoch_seconds())
        expires = issued + self.ttl_seconds
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": service,
            "sub": username,
            "roles": list(roles),
            "auth": auth_method,
            "iat": issued,
            "nbf": issued,
            "exp": expires,
        }
        if key_id is not None:
            claims["kid"] = key_id
        token = jwt.encode(
            claims,
            self._key,
            algorithm=jwts.ALGORITHM,
            headers={"kid": self._kid, "typ": TOKEN_TYPE},
        )
        return token, float(expires)


class AssertionVerifier:
    """Verify assertions addressed to one service; caches verified ones until they expire."""

    def __init__(
        self,
        public_keys: Iterable[str | Ed25519PublicKey],
        audience: str,
        *,
        leeway_seconds: int = 5,
        cache_size: int = 4096,
    ) -> None:
        self._keys = _key_ring(public_keys)
        self.audience = audience
        self._leeway = leeway_seconds
        self._cache: OrderedDict[str, Caller] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, token: str | None, *, now: float | None = None) -> Caller:
        """Return the caller named by a valid assertion, or raise `InvalidAssertionError`."""
        if not token:
            raise InvalidAssertionError("missing identity assertion")
        current = epoch_seconds() if now is None else now
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self._leeway > current:
                return cached
            self._cache.pop(token, None)
        caller = self._decode(token)
        if caller.expires_at + self._leeway <= current:
            raise InvalidAssertionError("identity assertion expired")
        self._cache[token] = caller
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return caller

    def replace_keys(self, public_keys: Iterable[str | Ed25519PublicKey]) -> None:
        """Accept these keys from now on (a rotation: the new key and the previous one)."""
        # Verified assertions stay cached: they were signed by a key trusted when checked
        # and expire within the assertion lifetime.
        self._keys = _key_ring(public_keys)

    def verify_headers(self, headers: Mapping[str, str]) -> Caller:
        """Verify the assertion header of a request."""
        return self.verify(headers.get(ASSERTION_HEADER))

    def _decode(self, token: str) -> Caller:
        try:
            claims = jwts.decode(
                token,
                self._keys,
                audience=self.audience,
                issuer=ISSUER,
                required=REQUIRED_CLAIMS,
                leeway=self._leeway,
                typ=TOKEN_TYPE,
            )
        except jwts.JwtError as exc:
            reason = _REFUSALS.get(type(exc)) or f"invalid identity assertion: {exc}"
            raise InvalidAssertionError(reason) from exc
        roles = claims["roles"]
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise InvalidAssertionError("identity assertion roles must be a list of strings")
        return Caller(
            username=str(claims["sub"]),
            roles=tuple(roles),
            auth_method=str(claims["auth"]),
            service=self.audience,
            key_id=claims.get("kid"),
            expires_at=float(claims["exp"]),
            claims=claims,
        )


def apply_verifier_keys(verifier: AssertionVerifier, values: SecretValues) -> None:
    """Put `verifier` on the assertion public key and the previous one found in `values`."""
    current = values.get(PUBLIC_KEY_SECRET)
    if current is None:
        raise ValueError(f"{PUBLIC_KEY_SECRET} is no longer set")
    previous = values.get(PREVIOUS_PUBLIC_KEY_SECRET)
    keys = [current.get_secret_value()]
    if previous is not None:
        keys.append(previous.get_secret_value())
    try:
        verifier.replace_keys(keys)
    except (KeyFormatError, ValueError, TypeError):
        raise ValueError(
            f"{PUBLIC_KEY_SECRET} or {PREVIOUS_PUBLIC_KEY_SECRET} is not an Ed25519 public key"
        ) from None


def watch_verifier_keys(manager: SecretsManager, verifier: AssertionVerifier) -> SecretWatcher:
    """Return a watcher (not started) that keeps `verifier` on the current assertion public
    key and the previous one, so a rotation of the gateway's assertion key needs no restart."""

    async def apply(values: SecretValues) -> None:
        apply_verifier_keys(verifier, values)

    return SecretWatcher(manager, VERIFIER_KEY_SECRETS, apply)
