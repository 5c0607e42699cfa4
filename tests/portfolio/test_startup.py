"""A refused start-up in a real process: one line naming the cause, no traceback, exit non-zero."""

import json
import os
import socket
import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.launch import HOST, uvicorn_command
from devstack.ports import free_port
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY
from tests.portfolio.http import SERVICE_TOKEN

pytestmark = pytest.mark.e2e

APP = "services.portfolio.app:app"


def _start(env: dict[str, str], port: int | None = None) -> tuple[int, list[dict[str, str]]]:
    """Run the portfolio until it exits; return its status and its log lines."""
    argv = uvicorn_command(APP, host=HOST, port=port or free_port(), python=sys.executable)
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    return done.returncode, [json.loads(line) for line in output.splitlines()]


def _errors(lines: list[dict[str, str]]) -> list[str]:
    return [line["message"] for line in lines if line["level"] == "error"]


@pytest.fixture
def env(sqlite_url: str) -> dict[str, str]:
    return {
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "SECRETS_PROVIDER": "env",
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
    }


def test_a_bad_setting_is_one_line(env):
    status, lines = _start({**env, "PORTFOLIO_PASSWORD_ROTATION_DAYS": "-1"})
    assert status != 0
    assert _errors(lines) == [
        "the portfolio service cannot start: PORTFOLIO_PASSWORD_ROTATION_DAYS: "
        "Input should be greater than or equal to 0"
    ]


def test_an_unreachable_database_is_one_line(env):
    port = free_port()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/ledger"
    status, lines = _start({**env, "PORTFOLIO_DATABASE_URL": url})
    assert status != 0
    assert _errors(lines) == [
        f"cannot start: cannot reach the PostgreSQL database 'ledger' at 127.0.0.1:{port} "
        "(ConnectionRefusedError: [Errno 111] Connection refused)"
    ]


def test_an_unreachable_secrets_store_is_one_line(env):
    port = free_port()
    vault = {"SECRETS_PROVIDER": "vault", "VAULT_ADDR": f"http://127.0.0.1:{port}"}
    status, lines = _start({**env, **vault, "VAULT_TOKEN": "a-token-of-no-use"})
    assert status != 0
    assert _errors(lines) == [
        f"the portfolio service cannot start: cannot reach Vault at http://127.0.0.1:{port} "
        "(ConnectionError)"
    ]
    assert "a-token-of-no-use" not in json.dumps(lines)


def test_a_busy_port_is_one_line(env):
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, lines = _start(env, port=port)
    assert status != 0
    assert _errors(lines) == [
        f"[Errno 98] error while attempting to bind on address ('{HOST}', {port}): "
        "address already in use"
    ]


def test_a_second_worker_is_refused(env):
    # The throttle of unknown usernames lives in each worker: two would tell names apart.
    port = free_port()
    argv = [*uvicorn_command(APP, host=HOST, port=port, python=sys.executable), "--workers", "2"]
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    # uvicorn's supervisor writes plain text; the workers JSON lines.
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    [refusal] = _errors(lines)
    assert refusal.startswith(
        f"the portfolio service cannot start: another portfolio worker already serves "
        f"{HOST}:{port}; "
    )
    assert "run one worker" in refusal
    assert "failed to start, stopping the parent process" in output
