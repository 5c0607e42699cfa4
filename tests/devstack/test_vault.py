"""`make run-vault` (`python -m devstack --vault`): the stack's secrets in a local OpenBao."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

import httpx
import hvac
import pytest

from devstack.ports import port_in_use
from devstack.processes import PROCESSES
from devstack.vault import SECRET_PATH
from services.portfolio.__main__ import ONE_TIME_PASSWORD_LABEL
from shared.secrets import api_key_secret_name
from shared.secrets.layout import API_KEYS
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


def read_api_keys(lines: list[str]) -> Callable[[], dict[str, str]]:
    """Return a reader of the stack's OpenBao `api-keys` path, with the root token the stack
    printed the place of."""
    [line] = [line for line in lines if "secrets: OpenBao at " in line]
    found = re.search(r"OpenBao at (\S+) \(root token in (.+?)\)", line)
    assert found, line
    client = hvac.Client(url=found.group(1), token=Path(found.group(2)).read_text().strip())
    mount, _, base = SECRET_PATH.partition("/")

    def read() -> dict[str, str]:
        answer = client.secrets.kv.v2.read_secret_version(
            path=f"{base}/{API_KEYS}", mount_point=mount, raise_on_deleted_version=True
        )
        return dict(answer["data"]["data"])

    return read


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

        # API keys rotated over HTTP (by an admin, and by the user for themself) are written
        # back to OpenBao by the portfolio with its own AppRole, as rotate_api_key does.
        bearer = {"Authorization": f"Bearer {token}"}
        vault = read_api_keys(stack.lines)
        for path in ("/admin/users/admin/api-key", "/auth/api-key"):
            issued = httpx.post(gateway + path, headers=bearer, timeout=10)
            assert issued.status_code == 200, issued.text
            assert issued.json()["stored_in_managed_store"] is True
            key = issued.json()["api_key"]
            assert vault()[api_key_secret_name("admin")] == key
            keyed = httpx.get(
                f"{gateway}/api/trading/orders", headers={"X-API-Key": key}, timeout=10
            )
            assert keyed.status_code == 200, keyed.text

        children = list(stack.children().values())
        assert stack.stop(signal.SIGINT) == 130
        assert wait_until_gone(children) == []
        assert not any(port_in_use(port) for port in ports.values())
    finally:
        stack.kill_leftovers()
    assert {process.name for process in PROCESSES} == set(ports)
