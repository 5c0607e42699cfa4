"""`make run-vault` (`python -m devstack --vault`): the stack's secrets in a local OpenBao."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from devstack.ports import port_in_use
from devstack.processes import PROCESSES
from services.portfolio.__main__ import ONE_TIME_PASSWORD_LABEL
from tests.support.runner import StackRunner, wait_until_gone

# Every name a managed secret may be given (written out, not read from the registry).
MANAGED_NAMES = {
    "SESSION_SECRET_KEY",
    "FLASK_SECRET_KEY",
    "FRONTEND_SESSION_SECRET",
    "GATEWAY_JWT_PRIVATE_KEY",
    "GATEWAY_JWT_SIGNING_KEY",
    "GATEWAY_ASSERTION_PRIVATE_KEY",
    "GATEWAY_ASSERTION_PUBLIC_KEY",
    "IDENTITY_SERVICE_TOKEN",
    "PORTFOLIO_INTERNAL_TOKEN",
}
SERVICE_OF = {"portfolio": "portfolio", "gateway": "gateway", "frontend": "frontend"}


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


@pytest.mark.e2e
def test_the_stack_runs_on_openbao_with_one_approle_per_service(stack_env, env_file, ports):
    stack = StackRunner(stack_env, env_file, args=("--vault",))
    try:
        stack.wait_for("Ctrl-C stops everything.")
        assert any("secrets: OpenBao at http://127.0.0.1:" in line for line in stack.lines)
        for name, port in ports.items():
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            assert response.status_code == 200, name

        for name, pid in stack.children().items():
            env = environment_of(pid)
            assert env["SECRETS_PROVIDER"] == "vault", name
            service = SERVICE_OF.get(name, "stub")
            assert env["VAULT_SECRET_ID_FILE"].endswith(f"/{service}/secret_id"), name
            assert env["VAULT_SECRET_LAYOUT"] == "per-service", name
            assert "SECRETS_SERVICE" not in env, name
            assert "VAULT_TOKEN" not in env, name
            assert not MANAGED_NAMES & set(env), name

        # The gateway signs a token with its key from OpenBao, the portfolio checks the
        # password behind IDENTITY_SERVICE_TOKEN from OpenBao, a stub verifies the assertion
        # with the public key from OpenBao.
        passwords = [
            line.split(ONE_TIME_PASSWORD_LABEL, 1)[1].split()[0]
            for line in stack.lines
            if ONE_TIME_PASSWORD_LABEL in line
        ]
        assert len(passwords) == 1, stack.output
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        new_password = "a-brand-new-passphrase-42"
        rotated = httpx.post(
            f"{gateway}/auth/password/rotate",
            json={
                "username": "admin",
                "current_password": passwords[0],
                "new_password": new_password,
            },
            timeout=10,
        )
        assert rotated.status_code == 200, rotated.text
        login = httpx.post(
            f"{gateway}/auth/token",
            json={"username": "admin", "password": new_password},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        token = login.json()["access_token"]
        answer = httpx.get(
            f"{gateway}/api/trading/orders",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"] == "admin"

        children = list(stack.children().values())
        assert stack.stop(signal.SIGINT) == 130
        assert wait_until_gone(children) == []
        assert not any(port_in_use(port) for port in ports.values())
    finally:
        stack.kill_leftovers()
    assert {process.name for process in PROCESSES} == set(ports)
