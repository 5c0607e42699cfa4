"""Dependency aliases of a stub's own endpoints."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.stub.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """Return the runtime the lifespan built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
