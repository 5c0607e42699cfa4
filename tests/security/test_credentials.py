"""Guessable or default service credentials: none is accepted, none is shipped."""

import os
import subprocess
import sys

import httpx
import pytest

from devstack import REPO_ROOT
from devstack.launch import GATEWAY_APP
from devstack.ports import free_port
from tests.deploy.support import load_script

GUESSES = ["", "changeme", "change_me_now!", "secret", "token", "admin", "password", "x" * 40]


def test_the_identity_api_refuses_guessed_service_tokens(stack):
    real = stack.env["IDENTITY_SERVICE_TOKEN"]
    guesses = [*GUESSES, real[:-1], real + "x", real.upper(), f"Bearer {real}"]
    with httpx.Client(base_url=stack.portfolio_url) as client:
        for guess in guesses:
            response = client.get("/internal/identity/users", headers={"X-Service-Token": guess})
            assert response.status_code == 401, guess
        ok = client.get("/internal/identity/users", headers={"X-Service-Token": real})
        assert ok.status_code == 200


def start(app: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "PORTFOLIO_"))}
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", app, "--port", str(free_port())],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("app", ["services.portfolio.app:app", GATEWAY_APP])
@pytest.mark.parametrize("weak", ["changeme", "change_me_now!", "short-but-not-32"])
def test_a_service_refuses_to_start_with_a_guessable_service_token(stack, app, weak):
    env = {**stack.env, "IDENTITY_SERVICE_TOKEN": weak}
    result = start(app, env)
    assert result.returncode != 0
    assert "IDENTITY_SERVICE_TOKEN" in result.stderr
    assert "32" in result.stderr
    assert weak not in result.stderr
    assert "Traceback" not in result.stderr


def test_development_secrets_are_random_per_checkout():
    write_dev_env = load_script("scripts/write_dev_env.py")
    first, second = write_dev_env.generate_secrets(), write_dev_env.generate_secrets()
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] != second[name], name
        assert len(first[name]) >= 32, name
    assert not (set(first.values()) & set(GUESSES))
