"""`python -m devstack` (`make run`): the whole stack as real processes, started and stopped."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from devstack.ports import port_in_use
from devstack.processes import PROCESSES
from services.portfolio.__main__ import ONE_TIME_PASSWORD_LABEL
from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from tests.support.runner import StackRunner, wait_until_gone

NEW_PASSWORD = "a-brand-new-passphrase-42"


def admin_password(stack: StackRunner) -> list[str]:
    return [
        line.split(ONE_TIME_PASSWORD_LABEL, 1)[1].split()[0]
        for line in stack.lines
        if ONE_TIME_PASSWORD_LABEL in line
    ]


@pytest.mark.e2e
def test_new_database_starts_everything_and_prints_one_admin_password_to_change(start_stack, ports):
    stack = start_stack()
    stack.wait_for("Ctrl-C stops everything.")

    assert set(stack.children()) == {process.name for process in PROCESSES}
    for name, port in ports.items():
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert response.status_code == 200, name
    assert f"frontend   http://127.0.0.1:{ports['frontend']}/" in stack.output
    assert f"http://127.0.0.1:{ports['gateway']}/docs" in stack.output
    assert f"log in at http://127.0.0.1:{ports['frontend']}/ and choose" in stack.output

    passwords = admin_password(stack)
    assert len(passwords) == 1, stack.output
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    credentials = {"username": "admin", "password": passwords[0]}
    first_login = httpx.post(f"{gateway}/auth/token", json=credentials, timeout=10)
    assert first_login.status_code == 403
    assert first_login.json()["error"]["code"] == "password_expired"
    rotated = httpx.post(
        f"{gateway}/auth/password/rotate",
        json={
            "username": "admin",
            "current_password": passwords[0],
            "new_password": NEW_PASSWORD,
        },
        timeout=10,
    )
    assert rotated.status_code == 200, rotated.text
    login = httpx.post(
        f"{gateway}/auth/token", json={"username": "admin", "password": NEW_PASSWORD}, timeout=10
    )
    assert login.status_code == 200
    assert login.json()["roles"] == ["admin"]

    children = list(stack.children().values())
    assert stack.stop(signal.SIGINT) == 130
    assert wait_until_gone(children) == []
    assert not any(port_in_use(port) for port in ports.values())


@pytest.mark.e2e
def test_database_with_users_gets_no_password_and_sigterm_stops_everything(
    start_stack, ports, database_url
):
    settings = PortfolioSettings(
        database_url=database_url, argon2_time_cost=1, argon2_memory_cost=1024, argon2_parallelism=1
    )
    with PortfolioIdentityService(settings=settings) as identity:
        identity.create_user("ops", "an operator passphrase", roles=["portfolio"])

    stack = start_stack()
    stack.wait_for("Ctrl-C stops everything.")

    assert admin_password(stack) == []
    assert "the database already has 1 user(s); no admin user created" in stack.output
    children = list(stack.children().values())
    assert len(children) == len(PROCESSES)
    assert stack.stop(signal.SIGTERM) == 143
    assert wait_until_gone(children) == []
    assert not any(port_in_use(port) for port in ports.values())


@pytest.mark.e2e
def test_a_process_that_cannot_start_stops_everything_with_its_status(stack_env, env_file, ports):
    env_file.write_text(
        "".join(
            line + "\n"
            for line in env_file.read_text().splitlines()
            if not line.startswith("IDENTITY_SERVICE_TOKEN=")
        )
    )
    stack = StackRunner(stack_env, env_file)
    try:
        returncode = stack.wait_exit(timeout=120)
        assert returncode not in (0, 130, 143)
        assert "missing secret IDENTITY_SERVICE_TOKEN" in stack.output
        assert f"devstack: a process exited with status {returncode}" in stack.output
        assert "stack ready" not in stack.output
        assert wait_until_gone(list(stack.children().values())) == []
        assert not any(port_in_use(port) for port in ports.values())
    finally:
        stack.kill_leftovers()


@pytest.mark.e2e
def test_a_process_that_exits_is_reported_and_restarted_and_ctrl_c_still_stops_all(
    start_stack, ports
):
    stack = start_stack()
    stack.wait_for("Ctrl-C stops everything.")
    first = stack.children()["market"]
    os.kill(first, signal.SIGKILL)
    stack.wait_for("market exited with status -9; restarting in 1 s", timeout=30)
    deadline = time.monotonic() + 30
    while stack.children()["market"] == first or not _healthy(ports["market"]):
        assert time.monotonic() < deadline, stack.output
        time.sleep(0.2)
    # The others never stopped.
    assert all(_healthy(port) for port in ports.values())

    children = list(stack.children().values())
    assert stack.stop(signal.SIGINT) == 130
    assert wait_until_gone(children) == []
    assert not any(port_in_use(port) for port in ports.values())


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
