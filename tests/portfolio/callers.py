"""Callers of the portfolio REST API: identity assertions signed as the gateway signs them."""

from collections.abc import Iterable

from shared.assertion import ASSERTION_HEADER, AssertionSigner
from shared.keys import generate_private_key, load_private_key, public_key_text

# One throwaway gateway assertion key pair for the whole test run.
ASSERTION_PRIVATE_KEY = generate_private_key()
ASSERTION_PUBLIC_KEY = public_key_text(load_private_key(ASSERTION_PRIVATE_KEY))
SIGNER = AssertionSigner(ASSERTION_PRIVATE_KEY)


def assertion(
    username: str = "alice",
    roles: Iterable[str] = ("portfolio",),
    *,
    service: str = "portfolio",
    signer: AssertionSigner = SIGNER,
    now: float | None = None,
) -> str:
    """Return an assertion naming `username`, addressed to `service`."""
    token, _ = signer.sign(
        username=username, roles=roles, auth_method="password", service=service, now=now
    )
    return token


def as_caller(username: str = "alice", roles: Iterable[str] = ("portfolio",)) -> dict[str, str]:
    """Return the headers the gateway adds for `username`.

    Assertions live 60 seconds: mint them when the request is made, never at import.
    """
    return {ASSERTION_HEADER: assertion(username, roles)}
