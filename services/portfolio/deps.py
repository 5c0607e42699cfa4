"""Dependency aliases both domains' routes share: the runtime the lifespan built."""

from typing import Annotated

from fastapi import Depends, Request

from services.portfolio.db import Database
from services.portfolio.runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """Return the runtime the lifespan built."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_database(runtime: RuntimeDep) -> Database:
    """Return the database the runtime opened."""
    return runtime.database


DatabaseDep = Annotated[Database, Depends(get_database)]
