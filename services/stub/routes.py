"""`/healthz` (no assertion needed); every other path is the echo app in echo.py."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.stub.deps import RuntimeDep
from services.stub.schemas import Health
from shared.readiness import readiness_response

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz(runtime: RuntimeDep) -> Health:
    """Answer while the process runs (no assertion needed)."""
    return Health(status="ok", service=runtime.service)


@router.get("/readyz")
async def readyz() -> JSONResponse:
    """Answer 200: a stub depends on nothing once it has read its key at start-up."""
    return readiness_response([])
