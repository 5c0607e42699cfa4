"""`/healthz` (no assertion needed); every other path is the echo app in echo.py."""

from __future__ import annotations

from fastapi import APIRouter

from services.stub.deps import RuntimeDep
from services.stub.schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz(runtime: RuntimeDep) -> Health:
    """Answer while the process runs (no assertion needed)."""
    return Health(status="ok", service=runtime.service)
