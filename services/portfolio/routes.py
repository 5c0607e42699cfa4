"""Health endpoints, and the handlers that turn every error into the JSON error body."""

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.portfolio.deps import DatabaseDep
from services.portfolio.errors import (
    IdentityBusyError,
    InvalidTradeError,
    PortfolioError,
    TooManyAttemptsError,
    error_code,
)
from services.portfolio.schemas import error_responses
from services.portfolio.store import Database
from shared.errors import ErrorCode, error_body
from shared.limits import nested_too_deeply

logger = logging.getLogger("services.portfolio")

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


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a domain error with its code and status from the errors table."""
    if not isinstance(exc, PortfolioError):
        return await unexpected_error_handler(request, exc)
    code, status = error_code(exc)
    extra: dict[str, Any] = {}
    headers: dict[str, str] = {}
    if isinstance(exc, TooManyAttemptsError | IdentityBusyError):
        extra["retry_after"] = exc.retry_after
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, InvalidTradeError):
        extra["fields"] = [exc.field]
    return JSONResponse(error_body(code, str(exc), **extra), status_code=status, headers=headers)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer FastAPI's 422 in the JSON error body, naming each bad field (never its value)."""
    if not isinstance(exc, RequestValidationError):
        return await unexpected_error_handler(request, exc)
    problems: list[str] = []
    fields: list[str] = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body",)]
        if error.get("type") == "json_invalid":
            problems.append("the request body is not valid JSON")
            continue
        field = ".".join(location) or "body"
        fields.append(field)
        if field == "body" and error.get("type") == "missing":
            problems.append("a JSON request body is required")
        elif field == "body":
            problems.append("the request body must be a JSON object")
        else:
            message = str(error.get("msg", "invalid"))
            # Only the first letter: messages may name symbols such as BTC-USD.
            problems.append(f"{field}: {message[:1].lower()}{message[1:]}")
    message = "invalid request: " + "; ".join(problems)
    return JSONResponse(
        error_body(ErrorCode.VALIDATION_ERROR, message, fields=fields), status_code=422
    )


HTTP_CODES: dict[int, str] = {
    404: ErrorCode.NOT_FOUND,
    405: "method_not_allowed",
    413: ErrorCode.PAYLOAD_TOO_LARGE,
}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer routing errors (404, 405) and oversized bodies (413) in the JSON error body."""
    if not isinstance(exc, StarletteHTTPException):
        return await unexpected_error_handler(request, exc)
    if nested_too_deeply(exc):
        # Answered like any other body that is not JSON (as `read_trade` does).
        invalid = [{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON"}]
        return await validation_error_handler(request, RequestValidationError(invalid))
    code = HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer a lost database with 503 naming it (never its password); other failures 500."""
    database: Database = request.app.state.database
    unavailable = await database.diagnose(exc)
    if unavailable is None:
        return await unexpected_error_handler(request, exc)
    logger.error("%s", unavailable)
    return JSONResponse(
        error_body(ErrorCode.SERVICE_UNAVAILABLE, str(unavailable)), status_code=503
    )


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Answer anything else with 500 and no stack trace."""
    logger.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    return JSONResponse(
        error_body(ErrorCode.INTERNAL_ERROR, "internal error; see the service log"),
        status_code=500,
    )
