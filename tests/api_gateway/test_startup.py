"""The gateway refusing to start in a real process: one JSON line naming the cause."""

import json
import os
import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.launch import GATEWAY_APP, HOST, uvicorn_command
from devstack.ports import free_port

pytestmark = pytest.mark.e2e


def _refusals(env: dict[str, str]) -> list[str]:
    argv = uvicorn_command(GATEWAY_APP, host=HOST, port=free_port(), python=sys.executable)
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
    assert done.returncode != 0
    assert "Traceback" not in output
    lines = [json.loads(line) for line in output.splitlines()]
    return [line["message"] for line in lines if line["level"] == "error"]


def test_a_bad_setting_is_one_line(keys):
    refusals = _refusals({**keys.env(), "GATEWAY_LOGIN_MAX_ATTEMPTS": "0"})
    assert refusals == [
        "gateway cannot start: GATEWAY_LOGIN_MAX_ATTEMPTS: Input should be greater than or equal to 1"
    ]


def test_a_missing_secret_is_one_line(keys):
    env = {**keys.env(), "GATEWAY_JWT_PRIVATE_KEY": ""}
    [refusal] = _refusals(env)
    assert refusal.startswith("gateway cannot start: ")
    assert "GATEWAY_JWT_PRIVATE_KEY" in refusal
