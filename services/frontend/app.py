"""Wiring of the frontend: lifespan, middleware, routes, error handlers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import SecretStr
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.frontend.config import (
    Settings,
    check_session_secret,
    load_session_secret,
    load_settings,
)
from services.frontend.csrf import FormPassSigner
from services.frontend.errors import (
    FrontendError,
    LoginRequiredError,
    PageNotFoundError,
    PayloadTooLargeError,
    SessionExpiredError,
    status_of,
)
from services.frontend.gateway import Gateway
from services.frontend.middleware import SecurityHeaders
from services.frontend.pages import (
    STATIC_DIR,
    build_templates,
    clear_session_cookie,
    redirect,
    render,
)
from services.frontend.routes import router
from services.frontend.sessions import (
    COOKIE_NAME,
    SECURE_COOKIE_NAME,
    CookieSigner,
    MemorySessionStore,
    SessionStore,
)
from shared.errors import ErrorCode, StartupErrorMiddleware, error_body
from shared.limits import BodyLimit
from shared.redirects import use_relative_slash_redirects

HTTP_CODES = {405: "method_not_allowed", 500: ErrorCode.INTERNAL_ERROR}


def wants_json(request: Request) -> bool:
    """Tell a page's own background request (JSON) from a page load (HTML)."""
    accept = request.headers.get("accept", "")
    return request.url.path.startswith("/session/") or (
        "application/json" in accept and "text/html" not in accept
    )


async def session_error(request: Request, exc: Exception) -> Response:
    """End the session (if any) and send the browser to the login page."""
    if not isinstance(exc, LoginRequiredError | SessionExpiredError):
        raise exc  # registered for this type only; never reached otherwise
    session_id = getattr(request.state, "session_id", None)
    if session_id is not None:
        await request.app.state.sessions.delete(session_id)
    expired = isinstance(exc, SessionExpiredError)
    login_url = "/login?expired=1" if expired else "/login"
    response: Response
    if wants_json(request):
        response = JSONResponse(
            error_body(exc.code, exc.message, login_url=login_url), status_code=401
        )
    else:
        response = redirect(login_url)
    clear_session_cookie(response, request)
    return response


async def frontend_error(request: Request, exc: Exception) -> Response:
    """Answer a frontend or gateway error as JSON or as an error page."""
    if not isinstance(exc, FrontendError):
        raise exc  # registered for this type only; never reached otherwise
    status = status_of(exc)
    if wants_json(request):
        return JSONResponse(error_body(exc.code, exc.message), status_code=status)
    session = None
    session_id = getattr(request.state, "session_id", None)
    if session_id is not None:
        session = await request.app.state.sessions.get(session_id)
    return await render(
        request,
        "error.html",
        session=session,
        status_code=status,
        status=status,
        code=exc.code,
        message=exc.message,
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Answer unknown paths, wrong methods and oversized forms in the common error shape."""
    if not isinstance(exc, StarletteHTTPException):
        raise exc  # registered for this type only; never reached otherwise
    if exc.status_code == 404:
        return await frontend_error(request, PageNotFoundError())
    if exc.status_code == 413:
        return await frontend_error(request, PayloadTooLargeError(str(exc.detail)))
    code = HTTP_CODES.get(exc.status_code, ErrorCode.VALIDATION_ERROR)
    return JSONResponse(
        error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
    )


async def validation_error(request: Request, exc: Exception) -> Response:
    """Name the field that was wrong, never echo the input."""
    if not isinstance(exc, RequestValidationError):
        raise exc  # registered for this type only; never reached otherwise
    fields = ", ".join(".".join(str(p) for p in err["loc"][1:]) for err in exc.errors())
    return JSONResponse(
        error_body(ErrorCode.VALIDATION_ERROR, f"invalid or missing: {fields}"), status_code=422
    )


async def internal_error(request: Request, exc: Exception) -> Response:
    """Answer a bug with the common error shape; the traceback goes to the log only."""
    return JSONResponse(
        error_body(ErrorCode.INTERNAL_ERROR, "the frontend hit an unexpected error"),
        status_code=500,
    )


def create_app(
    settings: Settings | None = None,
    *,
    session_secret: SecretStr | None = None,
    session_store: SessionStore | None = None,
) -> FastAPI:
    """Build the frontend; what is not given is read at start-up (environment, secrets layer)."""
    if session_secret is not None:
        check_session_secret(session_secret)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Read here, not at import, so a bad variable refuses start-up in one line.
        config = settings or load_settings()
        secret = session_secret or await load_session_secret()
        app.state.settings = config
        # `is None`, not `or`: an empty store is falsy (it has a length).
        app.state.sessions = (
            session_store
            if session_store is not None
            else MemorySessionStore(
                idle_timeout=config.security.session_timeout,
                lifetime=config.security.session_lifetime,
                max_sessions=config.security.max_sessions,
                max_sessions_per_user=config.security.max_sessions_per_user,
            )
        )
        app.state.cookie_name = SECURE_COOKIE_NAME if config.security.cookie_secure else COOKIE_NAME
        app.state.cookie_signer = CookieSigner(secret)
        app.state.form_signer = FormPassSigner(secret, lifetime=config.security.form_timeout)
        async with httpx.AsyncClient(
            base_url=str(config.gateway_url), timeout=config.gateway_timeout_seconds
        ) as client:
            app.state.gateway = Gateway(client)
            yield

    app = FastAPI(
        title="LegacyCoinTrader frontend",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.templates = build_templates()
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(StartupErrorMiddleware, prefix="frontend refused to start: ")
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
    use_relative_slash_redirects(app.router)
    app.add_exception_handler(LoginRequiredError, session_error)
    app.add_exception_handler(SessionExpiredError, session_error)
    app.add_exception_handler(FrontendError, frontend_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, internal_error)
    return app


app = create_app()
