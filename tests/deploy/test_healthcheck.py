"""docker/healthcheck.py, the compose healthcheck, against a real local HTTP server."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack import REPO_ROOT
from devstack.ports import free_port

SCRIPT = REPO_ROOT / "docker" / "healthcheck.py"


class Handler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.server.status if self.path == "/healthz" else 404  # type: ignore[attr-defined]
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.status = 200  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )


def test_healthy_server_exits_zero(server):
    assert check(str(server.server_address[1])).returncode == 0


def test_unhealthy_answer_exits_one(server):
    server.status = 503
    assert check(str(server.server_address[1])).returncode == 1


def test_nothing_listening_exits_one():
    assert check(str(free_port())).returncode == 1


@pytest.mark.parametrize("args", [(), ("http://127.0.0.1:8000",), ("8000", "8001")])
def test_wrong_arguments_exit_two_with_usage(args):
    result = check(*args)
    assert result.returncode == 2
    assert "usage: python docker/healthcheck.py <port>" in result.stderr
