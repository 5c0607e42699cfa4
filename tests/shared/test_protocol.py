"""The server protocol's caps on the request head, against a real uvicorn process.

Raw sockets, so a test decides exactly which bytes arrive and how they are split.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.servers import ServerProcess
from shared.limits import MAX_HEAD_BYTES, MAX_HEADERS
from tests.support.raw_http import Connection, Response, chunked, request

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("protocol") / "server.log"
    with ServerProcess("tests.shared.http_app:app", env={}, log_path=log) as running:
        yield running


@pytest.fixture
def client(server: ServerProcess) -> Iterator[Connection]:
    with Connection(server.port) as connection:
        yield connection


def assert_refused(response: Response, status: int, code: str) -> None:
    assert response.status == status
    assert response.headers["connection"] == "close"
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == code


class TestWithinTheCaps:
    def test_requests_on_a_kept_alive_connection_are_answered(self, client):
        for path in ("/one", "/two", "/three"):
            client.send(request(path))
            response = client.response()
            assert response.status == 200
            assert response.json()["path"] == path
            assert "connection" not in response.headers

    def test_exactly_the_cap_of_header_fields_passes(self, client):
        fields = [(f"X-Field-{n}", "v") for n in range(MAX_HEADERS - 1)]  # and Host
        client.send(request("/", *fields))
        response = client.response()
        assert response.status == 200
        assert response.json()["headers"] == MAX_HEADERS

    def test_a_head_just_under_the_byte_cap_passes(self, client):
        client.send(request("/", ("X-Big", "a" * (MAX_HEAD_BYTES - 1024))))
        assert client.response().status == 200

    def test_a_head_split_into_small_packets_is_read_whole(self, client):
        fields = [(f"X-Field-{n}", "v" * 40) for n in range(50)]
        client.send(request("/split", *fields), piece=7, pause=0.001)
        response = client.response()
        assert response.status == 200
        assert response.json()["headers"] == 51

    def test_pipelined_requests_are_answered_in_order(self, client):
        client.send(request("/slow") + request("/a") + request("/b"))
        assert [client.response().json()["path"] for _ in range(3)] == ["/slow", "/a", "/b"]

    def test_large_bodies_are_read_whole(self, client):
        body = b"x" * (8 * MIB)
        client.send(request("/upload", ("Content-Length", str(len(body))), method="POST"))
        client.send(body)
        assert client.response().json()["body"] == len(body)
        head = request("/chunked", ("Transfer-Encoding", "chunked"), method="POST")
        client.send(head + b"".join(chunked([b"y" * 1000] * 3000)), piece=64 * 1024)
        assert client.response().json()["body"] == 3_000_000

    def test_a_body_the_app_never_read_is_not_taken_for_a_head(self, client):
        body = b"x" * (4 * MIB)
        client.send(request("/early", ("Content-Length", str(len(body))), method="POST"))
        assert client.response().status == 200
        client.send(body, piece=64 * 1024)
        client.send(request("/after"))
        assert client.response().json()["path"] == "/after"

    def test_an_expect_100_continue_request_gets_its_continue(self, client):
        client.send(
            request("/", ("Content-Length", "5"), ("Expect", "100-continue"), method="POST")
        )
        assert client.response().status == 100
        client.send(b"hello")
        assert client.response().json()["body"] == 5


class TestOverTheCaps:
    def test_one_header_field_too_many_is_refused(self, client):
        fields = [(f"X-Field-{n}", "v") for n in range(MAX_HEADERS)]  # and Host
        client.send(request("/", *fields))
        assert_refused(client.response(), 431, "headers_too_large")
        assert client.closed()

    def test_100_000_header_fields_are_refused(self, client):
        fields = [(f"X-Field-{n}", "v") for n in range(100_000)]
        client.send_in_background([request("/", *fields)])
        assert_refused(client.response(), 431, "headers_too_large")
        assert client.closed()

    def test_a_16_mib_header_is_refused_before_the_server_holds_it(self, server, client):
        before = server.peak_memory_kib()
        head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: "
        client.send_in_background([head, *[b"a" * MIB] * 16, b"\r\n\r\n"])
        response = client.response()
        assert_refused(response, 431, "headers_too_large")
        assert str(MAX_HEAD_BYTES) in response.json()["error"]["message"]
        assert client.closed()
        # The server never held anything near the header: its peak grew by well under 16 MiB.
        assert server.peak_memory_kib() - before < 8 * 1024

    def test_a_head_over_the_byte_cap_in_small_packets_is_refused(self, client):
        head = b"GET / HTTP/1.1\r\nHost: test\r\nX-Big: "
        client.send_in_background([head, *[b"a" * 1024] * 80, b"\r\n\r\n"])
        assert_refused(client.response(), 431, "headers_too_large")

    def test_a_request_target_longer_than_the_cap_gets_414(self, client):
        client.send_in_background([request("/" + "p" * (2 * MAX_HEAD_BYTES))])
        assert_refused(client.response(), 414, "uri_too_long")
        assert client.closed()

    def test_oversized_trailers_are_refused(self, client):
        head = request("/", ("Transfer-Encoding", "chunked"), method="POST")
        trailer = b"X-Trailer: " + b"t" * (2 * MAX_HEAD_BYTES) + b"\r\n\r\n"
        client.send_in_background([head + b"5\r\nhello\r\n0\r\n", trailer])
        assert_refused(client.response(), 431, "headers_too_large")

    def test_a_kept_alive_connection_is_refused_at_the_oversized_request(self, client):
        client.send(request("/fine"))
        assert client.response().status == 200
        client.send(request("/", ("X-Big", "a" * (MAX_HEAD_BYTES + 1))))
        assert_refused(client.response(), 431, "headers_too_large")
        assert client.closed()

    def test_an_oversized_head_behind_pipelined_requests_is_refused_after_their_answers(
        self, client
    ):
        oversized = request("/", ("X-Big", "a" * (MAX_HEAD_BYTES + 1)))
        client.send(request("/slow") + request("/next") + oversized)
        assert client.response().json()["path"] == "/slow"
        assert client.response().json()["path"] == "/next"
        assert_refused(client.response(), 431, "headers_too_large")
        assert client.closed()

    def test_the_server_keeps_serving_after_refusals(self, server):
        with Connection(server.port) as connection:
            connection.send(request("/still-here"))
            assert connection.response().status == 200
