"""Health endpoints: the process runs (`/healthz`), the database answers (`/readyz`)."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from services.portfolio.db import Database
from services.portfolio.deps import DatabaseDep
from services.portfolio.errors import DatabaseUnavailableError
from shared.errors import error_responses
from shared.readiness import probe, readiness_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answer while the process runs."""
    return {"status": "ok"}


async def _database(database: Database) -> str | None:
    try:
        await database.ping()
    except DatabaseUnavailableError as exc:
        return exc.message  # names the database and the cause, never the password
    return None


@router.get("/readyz", responses=error_responses(503))
async def readyz(database: DatabaseDep) -> JSONResponse:
    """Answer 200 when the database answers, else 503 naming why."""
    check = await probe("database", _database(database), up_detail=database.description)
    return readiness_response([check])
