"""One definition of the uvicorn flags: every launch command carries exactly those of its app."""

from __future__ import annotations

import pytest

from devstack.launch import GATEWAY_APP, uvicorn_args, uvicorn_command
from shared.protocol import UVICORN_HTTP
from tests.support.launches import launch_commands


@pytest.mark.parametrize("where", list(launch_commands()))
def test_every_launch_command_carries_the_flags_of_its_app(where):
    command = launch_commands()[where]
    app = command[command.index("uvicorn") + 1]
    flags = command[command.index("--port") + 2 :]
    if where == "compose frontend":
        # Behind the compose load balancer: its forwarded headers are trusted, no one else's.
        at = flags.index("--forwarded-allow-ips")
        assert flags[at + 1] == "10.117.18.10"
        assert "--proxy-headers" in flags
        flags = [f for i, f in enumerate(flags) if i not in (at, at + 1) and f != "--proxy-headers"]
    assert sorted(flags) == sorted(uvicorn_args(app)), where


def test_every_app_runs_without_access_log_or_websockets_with_the_head_cap():
    for app in ("services.portfolio.app:app", GATEWAY_APP, "services.stub.app:app"):
        args = uvicorn_args(app)
        assert args[:5] == ("--no-access-log", "--ws", "none", "--http", UVICORN_HTTP)


def test_only_the_gateway_ignores_forwarded_headers():
    assert "--no-proxy-headers" in uvicorn_args(GATEWAY_APP)
    assert "--no-proxy-headers" not in uvicorn_args("services.frontend.app:app")


def test_the_command_serves_the_app_on_the_host_and_port():
    assert uvicorn_command("m:app", host="127.0.0.1", port=8123, python="py")[:8] == [
        "py",
        "-m",
        "uvicorn",
        "m:app",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
    ]
