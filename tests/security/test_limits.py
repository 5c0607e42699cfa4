"""Hostile volume: bodies, JSON nesting and request heads larger than any service reads.

Every body a service reads itself is capped (413 `payload_too_large`, before the body is
read when its length is declared); the identity API checks its service token before it
reads a byte; JSON nested past what the parser recurses is a validation error, never a
500 with a traceback; a request head past the server's caps gets 431 from every process.
The proxy keeps streaming large bodies to the downstream services.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.servers import ServerProcess
from shared.limits import MAX_BODY_BYTES
from shared.protocol import UVICORN_HTTP
from tests.security.conftest import PASSWORD
from tests.support.launches import launch_commands
from tests.support.raw_http import Connection, chunked, request

MIB = 1024 * 1024
DECLARED = str(200 * MIB)  # declared, never sent
JSON = ("Content-Type", "application/json")
FORM = ("Content-Type", "application/x-www-form-urlencoded")
# 30,000 levels: deeper than the JSON parser recurses, still under the body cap.
DEEP_JSON = b"[" * 30_000 + b"]" * 30_000
DEEP_FIELD = b'{"username": "x", "password": ' + DEEP_JSON + b"}"


def bearer(url: str, username: str) -> tuple[str, str]:
    response = httpx.post(url + "/auth/token", json={"username": username, "password": PASSWORD})
    response.raise_for_status()
    return ("Authorization", f"Bearer {response.json()['access_token']}")


@pytest.fixture(scope="module")
def admin(stack) -> tuple[str, str]:
    name, _ = stack.user("admin")
    return bearer(stack.gateway_url, name)


@pytest.fixture(scope="module")
def service_token(stack) -> tuple[str, str]:
    return ("X-Service-Token", stack.env["IDENTITY_SERVICE_TOKEN"])


@pytest.fixture(scope="module")
def frontend(stack) -> Iterator[ServerProcess]:
    env = {
        "SECRETS_PROVIDER": "env",
        "SESSION_SECRET_KEY": secrets.token_urlsafe(48),
        "GATEWAY_URL": stack.gateway_url,
        "SECURITY__COOKIE_SECURE": "false",
    }
    log = stack.logs / "frontend-limits.log"
    with ServerProcess("services.frontend.app:app", env=env, log_path=log) as server:
        yield server


def gateway_bodies(admin_field: tuple[str, str]) -> dict[str, tuple[str, str, tuple[str, str]]]:
    """Every gateway endpoint that reads a body: method, path, and the fields it needs."""
    return {
        "token (JSON)": ("POST", "/auth/token", JSON),
        "token (form)": ("POST", "/auth/token", FORM),
        "password rotation": ("POST", "/auth/password/rotate", JSON),
        "admin roles": ("PUT", "/admin/users/nobody/roles", admin_field),
    }


ENDPOINTS = ["token (JSON)", "token (form)", "password rotation", "admin roles"]


def endpoint(name: str, admin_field: tuple[str, str]) -> tuple[str, str, list[tuple[str, str]]]:
    method, path, field = gateway_bodies(admin_field)[name]
    fields = [JSON, field] if field not in (JSON, FORM) else [field]
    return method, path, fields


def assert_too_large(connection: Connection) -> None:
    response = connection.response()
    assert response.status == 413
    assert response.code == "payload_too_large"
    assert str(MAX_BODY_BYTES) in response.json()["error"]["message"]


def new_log_text(path: Path, start: int) -> str:
    return path.read_bytes()[start:].decode(errors="replace")


class TestGatewayBodies:
    @pytest.mark.parametrize("name", ENDPOINTS)
    def test_a_body_declared_too_large_is_refused_before_it_is_sent(self, stack, admin, name):
        method, path, fields = endpoint(name, admin)
        with Connection(stack.gateway_url) as connection:
            connection.send(request(path, *fields, ("Content-Length", DECLARED), method=method))
            assert_too_large(connection)

    @pytest.mark.parametrize("name", ENDPOINTS)
    def test_a_chunked_body_is_refused_once_it_passes_the_cap(self, stack, admin, name):
        method, path, fields = endpoint(name, admin)
        with Connection(stack.gateway_url) as connection:
            connection.send(request(path, *fields, ("Transfer-Encoding", "chunked"), method=method))
            connection.send_in_background(chunked([b"a" * 16384] * 6400))  # 100 MiB
            assert_too_large(connection)

    def test_the_connection_stays_usable_after_a_refused_body(self, stack):
        body = b"a" * (2 * MAX_BODY_BYTES)
        head = request("/auth/token", JSON, ("Content-Length", str(len(body))), method="POST")
        with Connection(stack.gateway_url) as connection:
            connection.send(head + body)
            assert_too_large(connection)
            connection.send(request("/healthz"))
            assert connection.response().status == 200

    def test_four_large_bodies_at_once_leave_the_gateways_memory_flat(self, stack):
        gateway = stack.gateway()  # its own process, so its memory is this test's alone
        before = gateway.peak_memory_kib()
        connections = [Connection(gateway.url) for _ in range(4)]
        try:
            for connection in connections:
                head = request("/auth/token", JSON, ("Transfer-Encoding", "chunked"), method="POST")
                connection.send(head)
                connection.send_in_background(chunked([b"a" * 65536] * 512))  # 32 MiB each
            for connection in connections:
                assert_too_large(connection)
        finally:
            for connection in connections:
                connection.close()
        # Reading them whole would have cost over 128 MiB.
        assert gateway.peak_memory_kib() - before < 16 * 1024

    def test_a_body_under_the_cap_is_still_read(self, stack):
        name, _ = stack.user("trading")
        padding = "x" * (MAX_BODY_BYTES // 2)
        response = httpx.post(
            stack.gateway_url + "/auth/token",
            json={"username": name, "password": PASSWORD, "padding": padding},
        )
        assert response.status_code == 200


class TestIdentityApi:
    PATH = "/internal/identity/authenticate"

    @pytest.mark.parametrize("framing", ["declared", "chunked"])
    def test_a_caller_without_the_service_token_is_refused_before_its_body_is_read(
        self, stack, framing
    ):
        length = ("Content-Length", DECLARED) if framing == "declared" else None
        fields = [JSON, length or ("Transfer-Encoding", "chunked")]
        with Connection(stack.portfolio_url) as connection:
            connection.send(request(self.PATH, *fields, method="POST"))
            if framing == "chunked":
                connection.send(next(iter(chunked([b"a" * 1024]))))
            # Answered with the body still to come: it was never waited for.
            response = connection.response()
            assert response.status == 401
            assert response.code == "invalid_token"

    def test_a_small_body_without_the_service_token_is_refused_too(self, stack):
        response = httpx.post(
            stack.portfolio_url + self.PATH, headers=dict([JSON]), content=b"not even JSON"
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_token"

    @pytest.mark.parametrize("framing", ["declared", "chunked"])
    def test_the_gateways_oversized_body_is_refused(self, stack, service_token, framing):
        with Connection(stack.portfolio_url) as connection:
            if framing == "declared":
                fields = [JSON, service_token, ("Content-Length", DECLARED)]
                connection.send(request(self.PATH, *fields, method="POST"))
            else:
                fields = [JSON, service_token, ("Transfer-Encoding", "chunked")]
                connection.send(request(self.PATH, *fields, method="POST"))
                connection.send_in_background(chunked([b"a" * 16384] * 6400))
            assert_too_large(connection)


class TestPortfolioApi:
    @pytest.mark.parametrize(("size", "framing"), [(1, "declared"), (16, "chunked")])
    def test_an_oversized_trade_through_the_gateway_gets_413(self, stack, size, framing):
        name, _ = stack.user("portfolio")
        body = b"{" + b" " * (size * MIB) + b"}"
        response = httpx.post(
            stack.gateway_url + "/api/portfolio/trades",
            headers=dict([bearer(stack.gateway_url, name), JSON]),
            content=body if framing == "declared" else iter([body]),
            timeout=60,
        )
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

    def test_large_uploads_still_stream_through_the_proxy(self, stack):
        name, _ = stack.user("trading")
        body = b"u" * (16 * MIB)
        response = httpx.post(
            stack.gateway_url + "/api/trading/upload",
            headers=dict([bearer(stack.gateway_url, name)]),
            content=iter([body[start : start + MIB] for start in range(0, len(body), MIB)]),
            timeout=60,
        )
        assert response.status_code == 200
        assert response.json()["path"] == "/upload"


class TestFrontendForms:
    @pytest.mark.parametrize("framing", ["declared", "chunked"])
    def test_an_oversized_login_form_gets_the_error_page(self, frontend, framing):
        fields = [FORM, ("Accept", "text/html")]
        with Connection(frontend.url) as connection:
            if framing == "declared":
                connection.send(
                    request("/login", *fields, ("Content-Length", DECLARED), method="POST")
                )
            else:
                connection.send(
                    request("/login", *fields, ("Transfer-Encoding", "chunked"), method="POST")
                )
                connection.send_in_background(chunked([b"a" * 16384] * 6400))
            response = connection.response()
            assert response.status == 413
            assert response.headers["content-type"].startswith("text/html")
            assert b"payload_too_large" in response.body

    def test_a_script_gets_the_json_error(self, frontend):
        fields = [FORM, ("Accept", "application/json"), ("Content-Length", DECLARED)]
        with Connection(frontend.url) as connection:
            connection.send(request("/login", *fields, method="POST"))
            assert_too_large(connection)


class TestDeepJson:
    def gateway_cases(self, admin) -> list[tuple[str, str, list[tuple[str, str]], bytes]]:
        return [
            ("POST", "/auth/token", [JSON], DEEP_JSON),
            ("POST", "/auth/token", [JSON], DEEP_FIELD),
            ("POST", "/auth/password/rotate", [JSON], DEEP_JSON),
            ("PUT", "/admin/users/nobody/roles", [JSON, admin], DEEP_JSON),
        ]

    def test_the_gateway_answers_422_without_a_traceback(self, stack, admin):
        log = stack.logs / "gateway.log"
        start = log.stat().st_size
        for method, path, fields, body in self.gateway_cases(admin):
            response = httpx.request(
                method, stack.gateway_url + path, headers=dict(fields), content=body
            )
            assert response.status_code == 422, (path, response.text)
            assert response.json()["error"]["code"] == "validation_error"
        assert "Traceback" not in new_log_text(log, start)

    def test_the_identity_api_answers_422_without_a_traceback(self, stack, service_token):
        log = stack.logs / "portfolio.log"
        start = log.stat().st_size
        for path in ("/internal/identity/authenticate", "/internal/identity/users/x/roles"):
            method = "POST" if path.endswith("authenticate") else "PUT"
            response = httpx.request(
                method,
                stack.portfolio_url + path,
                headers=dict([service_token, JSON]),
                content=DEEP_JSON,
            )
            assert response.status_code == 422, (path, response.text)
            assert response.json()["error"]["code"] == "validation_error"
        assert "Traceback" not in new_log_text(log, start)


class TestHeads:
    @pytest.fixture(params=["gateway", "portfolio", "stub", "frontend"])
    def url(self, request, stack, frontend) -> str:
        return {
            "gateway": stack.gateway_url,
            "portfolio": stack.portfolio_url,
            "stub": stack.stub_url,
            "frontend": frontend.url,
        }[request.param]

    def test_a_16_mib_header_gets_431(self, url):
        with Connection(url) as connection:
            head = b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Big: "
            connection.send_in_background([head, *[b"a" * MIB] * 16, b"\r\n\r\n"])
            response = connection.response()
            assert response.status == 431
            assert response.code == "headers_too_large"
            assert connection.closed()

    def test_100_000_header_fields_get_431(self, url):
        fields = [(f"X-Field-{n}", "v") for n in range(100_000)]
        with Connection(url) as connection:
            connection.send_in_background([request("/healthz", *fields)])
            response = connection.response()
            assert response.status == 431
            assert response.code == "headers_too_large"
            assert connection.closed()


@pytest.mark.parametrize("where", list(launch_commands()))
def test_every_service_runs_with_the_protocol_that_caps_the_head(where):
    command = launch_commands()[where]
    assert "--http" in command, where
    assert command[command.index("--http") + 1] == UVICORN_HTTP, where
