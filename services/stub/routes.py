"""`/healthz`, and every other method and path: echo the verified caller."""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.stub.deps import VerifiedCaller
from services.stub.schemas import Echo, Health
from shared.assertion import REQUEST_ID_HEADER

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

router = APIRouter()


@router.get("/healthz", response_model=Health)
async def healthz(request: Request) -> Health:
    """Answer while the process runs (no assertion needed)."""
    return Health(status="ok", service=request.app.state.service)


@router.api_route("/{path:path}", methods=METHODS, response_model=Echo)
async def echo(request: Request, caller: VerifiedCaller) -> Echo:
    """Echo the service, the request and the caller the assertion names."""
    return Echo(
        service=caller.service,
        method=request.method,
        path=request.url.path,
        user=caller.username,
        roles=list(caller.roles),
        request_id=request.headers.get(REQUEST_ID_HEADER),
    )
