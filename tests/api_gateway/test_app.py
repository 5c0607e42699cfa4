import os
import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.ports import free_port
from shared.keys import generate_private_key

SECRETS = {
    "GATEWAY_JWT_PRIVATE_KEY": generate_private_key(),
    "GATEWAY_ASSERTION_PRIVATE_KEY": generate_private_key(),
    "IDENTITY_SERVICE_TOKEN": "t" * 40,
}


def start(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRETS and k not in ("GATEWAY_JWT_SIGNING_KEY", "PORTFOLIO_INTERNAL_TOKEN")
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "services.api_gateway.app:app",
            "--port",
            str(free_port()),
        ],
        cwd=REPO_ROOT,
        env={**clean, "SECRETS_PROVIDER": "env", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("missing", list(SECRETS))
def test_gateway_refuses_to_start_without_a_required_secret(missing):
    result = start({k: v for k, v in SECRETS.items() if k != missing})
    assert result.returncode != 0
    assert f"gateway cannot start: missing secret {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    for value in SECRETS.values():
        assert value not in result.stderr


def test_gateway_refuses_a_malformed_key_without_printing_it():
    bad = "definitely-not-a-key-" + "z" * 20
    result = start({**SECRETS, "GATEWAY_JWT_PRIVATE_KEY": bad})
    assert result.returncode != 0
    assert "GATEWAY_JWT_PRIVATE_KEY" in result.stderr
    assert bad not in result.stderr
    assert "Traceback" not in result.stderr


def test_gateway_refuses_a_bad_setting_naming_it():
    result = start({**SECRETS, "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": "-1"})
    assert result.returncode != 0
    assert "GATEWAY_UPSTREAM_TIMEOUT_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr
