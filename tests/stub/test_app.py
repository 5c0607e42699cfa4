import os
import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.ports import free_port
from shared.keys import generate_private_key, load_private_key, public_key_text

PUBLIC_KEY = public_key_text(load_private_key(generate_private_key()))


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("STUB_SERVICE_NAME", "GATEWAY_ASSERTION_PUBLIC_KEY")
    }
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "services.stub.app:app", "--port", str(free_port())],
        cwd=REPO_ROOT,
        env={**clean, "SECRETS_PROVIDER": "env", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", ["portfolio", "billing", ""])
def test_stub_refuses_to_start_as_anything_but_a_stub_service(name):
    result = start({"STUB_SERVICE_NAME": name, "GATEWAY_ASSERTION_PUBLIC_KEY": PUBLIC_KEY})
    assert result.returncode != 0
    assert "STUB_SERVICE_NAME" in result.stderr
    assert "trading, market, strategy, token, execution, monitoring" in result.stderr
    assert "Traceback" not in result.stderr


def test_stub_refuses_to_start_without_the_assertion_key():
    result = start({"STUB_SERVICE_NAME": "trading"})
    assert result.returncode != 0
    assert "missing secret GATEWAY_ASSERTION_PUBLIC_KEY" in result.stderr
    assert "Traceback" not in result.stderr
