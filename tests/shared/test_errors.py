"""The error contract: the JSON body, the root error and its status table, the framework's
errors answered the same way everywhere, and a refused start-up reported in one line."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import Body, FastAPI
from fastapi.exceptions import HTTPException as FastAPIHTTPException
from pydantic import BaseModel, ValidationError

from shared.errors import (
    ErrorBody,
    ErrorCode,
    ServiceError,
    StartupError,
    StartupErrorMiddleware,
    StatusTable,
    error_body,
    error_responses,
    exception_handlers,
    nested_too_deeply,
    settings_problems,
    status_for,
)
from shared.limits import BodyLimit


def test_error_body_holds_code_message_and_extras():
    assert error_body("too_many_attempts", "wait", retry_after=3) == {
        "error": {"code": "too_many_attempts", "message": "wait", "retry_after": 3}
    }


def test_the_body_model_documents_code_message_and_extras():
    body = ErrorBody.model_validate(error_body("conflict", "taken", field="name"))
    assert body.model_dump() == {"error": {"code": "conflict", "message": "taken", "field": "name"}}
    assert error_responses(404, 409) == {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}


class ShopError(ServiceError):
    """The root of a made-up service's errors."""


class OutOfStock(ShopError):
    code = "out_of_stock"
    message = "nothing left"


class SoldOut(OutOfStock):
    """Not in the table: its parent's status applies."""


class Throttled(ShopError):
    code = ErrorCode.TOO_MANY_ATTEMPTS

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"wait {retry_after} seconds", retry_after=retry_after)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Relayed(ShopError):
    def __init__(self, status: int, code: str) -> None:
        super().__init__("relayed")
        self.status, self.code = status, code


TABLE: StatusTable = {OutOfStock: 409, Throttled: 429, ShopError: 500}


def test_the_status_comes_from_the_nearest_class_in_the_table():
    assert status_for(OutOfStock(), TABLE) == 409
    assert status_for(SoldOut(), TABLE) == 409
    assert status_for(ShopError("bug"), TABLE) == 500
    assert status_for(ServiceError("not in the table at all"), TABLE) == 500


def test_an_error_that_knows_its_status_keeps_it():
    assert status_for(Relayed(418, "teapot"), TABLE) == 418


class Order(BaseModel):
    item: str
    quantity: int


def shop_app() -> FastAPI:
    app = FastAPI()

    @app.get("/out")
    async def out() -> None:
        raise SoldOut()

    @app.get("/throttled")
    async def throttled() -> None:
        raise Throttled(7)

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("password=hunter2")

    @app.get("/teapot")
    async def teapot() -> None:
        raise FastAPIHTTPException(418, "short and stout")

    @app.post("/orders")
    async def order(body: Order = Body()) -> Order:  # noqa: B008
        return body

    app.add_middleware(BodyLimit, max_bytes=100_000)
    for exception, handler in exception_handlers(TABLE).items():
        app.add_exception_handler(exception, handler)
    return app


@pytest.fixture
async def shop() -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(shop_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        yield client


async def test_a_service_error_answers_its_code_message_and_status(shop):
    response = await shop.get("/out")
    assert response.status_code == 409
    assert response.json() == {"error": {"code": "out_of_stock", "message": "nothing left"}}


async def test_extra_keys_and_headers_come_from_the_error(shop):
    response = await shop.get("/throttled")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"] == {
        "code": "too_many_attempts",
        "message": "wait 7 seconds",
        "retry_after": 7,
    }


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/out", 405, "method_not_allowed"),
    ],
)
async def test_the_frameworks_errors_have_one_code_each(shop, method, path, status, code):
    response = await shop.request(method, path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_an_unknown_path_says_so(shop):
    assert (await shop.get("/nowhere")).json()["error"]["message"] == "no such path"


async def test_an_oversized_body_is_payload_too_large(shop):
    response = await shop.post("/orders", content=b"x" * 200_000)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_any_other_http_error_is_http_error(shop):
    response = await shop.get("/teapot")
    assert response.status_code == 418
    assert response.json() == {"error": {"code": "http_error", "message": "short and stout"}}


@pytest.mark.parametrize(
    ("body", "fields", "says"),
    [
        ({"item": "tea"}, ["quantity"], "quantity: field required"),
        ({"item": "tea", "quantity": "lots"}, ["quantity"], "quantity: input should be"),
        ([1, 2], ["body"], "the request body must be a JSON object"),
    ],
)
async def test_a_validation_error_names_each_field_never_the_value(shop, body, fields, says):
    response = await shop.post("/orders", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["fields"] == fields
    assert error["message"].startswith("invalid request: ")
    assert says in error["message"]
    assert "lots" not in error["message"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"", "a JSON request body is required"),
        (b"{not json", "the request body is not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, "the JSON body nests too deeply"),
    ],
)
async def test_a_body_that_is_not_a_json_object_is_a_validation_error(shop, raw, says):
    response = await shop.post("/orders", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert says in response.json()["error"]["message"]


async def test_a_bug_answers_500_and_logs_its_type_never_its_message(shop, caplog):
    with caplog.at_level(logging.ERROR, logger="shared.errors"):
        response = await shop.get("/bug")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "internal error"}}
    assert "RuntimeError on GET /bug" in caplog.text
    assert "hunter2" not in caplog.text + response.text


def test_only_a_recursion_error_is_too_deep():
    deep = FastAPIHTTPException(400)
    deep.__cause__ = RecursionError()
    other = FastAPIHTTPException(400)
    other.__cause__ = UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid")
    assert nested_too_deeply(deep)
    assert not nested_too_deeply(other)
    assert not nested_too_deeply(FastAPIHTTPException(400))


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


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (ServiceError("database down"), "cannot start: database down"),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "cannot start: ConnectionRefusedError: Connection refused",
        ),
        # A bug's message may hold anything: its type only, and never a traceback.
        (RuntimeError("hunter2"), "cannot start: unexpected RuntimeError during start-up"),
    ],
)
async def test_any_other_error_is_one_line_too(error, line):
    assert await startup_failure(refusing_app(error)) == line
