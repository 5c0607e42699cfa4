"""The error contract: the JSON body, and a refused start-up reported in one line."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError

from shared.errors import StartupError, StartupErrorMiddleware, error_body, settings_problems


def test_error_body_holds_code_message_and_extras():
    assert error_body("too_many_attempts", "wait", retry_after=3) == {
        "error": {"code": "too_many_attempts", "message": "wait", "retry_after": 3}
    }


class Inner(BaseModel):
    port: int


class Outer(BaseModel):
    timeout: float
    inner: Inner


def test_settings_problems_name_every_bad_variable_in_one_line():
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate({"timeout": "soon", "inner": {"port": "x"}})
    line = settings_problems(caught.value, delimiter="__")
    assert "\n" not in line
    assert line.startswith("TIMEOUT: ")
    assert "; INNER__PORT: " in line
    assert "; INNER.PORT: " in settings_problems(caught.value)


def refusing_app(error: Exception, **middleware: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise error
        yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(StartupErrorMiddleware, **middleware)
    return app


async def startup_failure(app: FastAPI) -> str:
    sent: list[dict] = []
    received = iter([{"type": "lifespan.startup"}])

    async def receive() -> dict:
        return next(received)

    async def send(message: dict) -> None:
        sent.append(message)

    with pytest.raises(Exception):  # noqa: B017, PT011 - Starlette re-raises after reporting
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    [failed] = [m for m in sent if m["type"] == "lifespan.startup.failed"]
    return str(failed["message"])


@pytest.mark.parametrize("prefix", ["", "frontend refused to start: "])
async def test_a_startup_error_is_reported_as_its_one_line(prefix):
    app = refusing_app(StartupError("missing secret X"), prefix=prefix)
    assert await startup_failure(app) == f"{prefix}missing secret X"


async def test_any_other_error_keeps_starlettes_report():
    message = await startup_failure(refusing_app(RuntimeError("boom")))
    assert "Traceback" in message
