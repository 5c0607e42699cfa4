"""Dependency aliases of the stub."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from shared.assertion import AssertionVerifier, Caller


def get_verifier(request: Request) -> AssertionVerifier:
    """Return the verifier the lifespan built."""
    verifier: AssertionVerifier = request.app.state.verifier
    return verifier


def verified_caller(
    request: Request, verifier: Annotated[AssertionVerifier, Depends(get_verifier)]
) -> Caller:
    """Return the caller named by a valid gateway assertion; anything else is refused."""
    return verifier.verify_headers(request.headers)


VerifiedCaller = Annotated[Caller, Depends(verified_caller)]
