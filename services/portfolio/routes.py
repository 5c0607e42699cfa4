"""Health endpoints: the process runs (`/healthz`), the database answers (`/readyz`)."""

from fastapi import APIRouter

from services.portfolio.deps import DatabaseDep
from shared.errors import error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer while the process runs."""
    return {"status": "ok"}


@router.get("/readyz", responses=error_responses(503))
async def readyz(database: DatabaseDep) -> dict[str, str]:
    """Answer 200 when the database answers, else 503."""
    await database.ping()
    return {"status": "ready"}
