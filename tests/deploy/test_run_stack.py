"""scripts/run_stack.py (`make run`): the whole stack as real processes, and its refusals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from tests.deploy.support import load_run_stack, load_script
from tests.support.runner import RUN_STACK, StackRunner, distinct_free_ports, wait_until_gone
from tests.support.servers import REPO_ROOT, free_port

run_stack = load_run_stack()
write_dev_env = load_script("scripts/write_dev_env.py")

# Cheap Argon2 for tests only; production defaults stay as they are.
FAST_HASHING = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}
NEW_PASSWORD = "a-brand-new-passphrase-42"


def port_is_free(port: int) -> bool:
    return not run_stack.port_in_use(port)


@pytest.fixture
def ports() -> dict[str, int]:
    return dict(
        zip(
            [process.name for process in run_stack.PROCESSES],
            distinct_free_ports(len(run_stack.PROCESSES)),
            strict=True,
        )
    )


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'portfolio.db'}"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "stack.env"
    path.write_text(write_dev_env.render())
    return path


@pytest.fixture
def stack_env(ports: dict[str, int], database_url: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LCT_")}
    env.update(FAST_HASHING)
    env["PORTFOLIO_DATABASE_URL"] = database_url
    for process in run_stack.PROCESSES:
        env[process.port_variable] = str(ports[process.name])
    return env


@pytest.fixture
def start_stack(stack_env: dict[str, str], env_file: Path) -> Iterator[Callable[[], StackRunner]]:
    started: list[StackRunner] = []

    def start() -> StackRunner:
        stack = StackRunner(stack_env, env_file)
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.kill_leftovers()


def admin_password(stack: StackRunner) -> list[str]:
    return [
        line.split(run_stack.PASSWORD_LABEL, 1)[1].split()[0]
        for line in stack.lines
        if run_stack.PASSWORD_LABEL in line
    ]


@pytest.mark.e2e
def test_new_database_starts_everything_and_prints_one_admin_password_to_change(start_stack, ports):
    stack = start_stack()
    stack.wait_for("Ctrl-C stops everything.")

    assert set(stack.children()) == {process.name for process in run_stack.PROCESSES}
    for name, port in ports.items():
        response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert response.status_code == 200, name
    assert f"frontend   http://127.0.0.1:{ports['frontend']}/" in stack.output
    assert f"http://127.0.0.1:{ports['gateway']}/docs" in stack.output

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
    assert all(port_is_free(port) for port in ports.values())


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
    assert len(children) == len(run_stack.PROCESSES)
    assert stack.stop(signal.SIGTERM) == 143
    assert wait_until_gone(children) == []
    assert all(port_is_free(port) for port in ports.values())


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
        assert f"a process exited with status {returncode}" in stack.output
        assert "stack ready" not in stack.output
        assert wait_until_gone(list(stack.children().values())) == []
        assert all(port_is_free(port) for port in ports.values())
    finally:
        stack.kill_leftovers()


def run_script(
    stack_env: dict[str, str], *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_STACK), *args],
        cwd=REPO_ROOT,
        env=stack_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class TestRefusals:
    def test_port_in_use_is_refused_naming_the_port_and_the_process(
        self, stack_env, env_file, ports
    ):
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", ports["gateway"]))
            holder.listen()
            result = run_script(stack_env, "--env-file", str(env_file))
        assert result.returncode == 2
        assert (
            f"run_stack: port {ports['gateway']} (gateway) is already in use by pid {os.getpid()}"
        ) in result.stderr
        assert "LCT_GATEWAY_PORT" in result.stderr
        assert "started" not in result.stdout

    def test_every_busy_port_gets_its_own_line(self, stack_env, env_file, ports):
        with socket.socket() as first, socket.socket() as second:
            for holder, name in ((first, "trading"), (second, "monitoring")):
                holder.bind(("127.0.0.1", ports[name]))
                holder.listen()
            result = run_script(stack_env, "--env-file", str(env_file))
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2
        assert len(lines) == 2
        assert f"port {ports['trading']} (trading)" in lines[0]
        assert f"port {ports['monitoring']} (monitoring)" in lines[1]

    @pytest.mark.parametrize("value", ["http", "0", "70000", "-1"])
    def test_port_variable_that_is_not_a_port_is_refused(self, stack_env, env_file, value):
        result = run_script({**stack_env, "LCT_FRONTEND_PORT": value}, "--env-file", str(env_file))
        assert result.returncode == 2
        assert f"LCT_FRONTEND_PORT={value} is not a TCP port" in result.stderr

    def test_two_processes_on_one_port_are_refused(self, stack_env, env_file, ports):
        env = {**stack_env, "LCT_MARKET_PORT": str(ports["trading"])}
        result = run_script(env, "--env-file", str(env_file))
        assert result.returncode == 2
        assert f"market and trading are both set to port {ports['trading']}" in result.stderr

    def test_missing_env_file_is_refused_with_the_command_that_writes_it(self, stack_env, tmp_path):
        missing = tmp_path / "nowhere.env"
        result = run_script(stack_env, "--env-file", str(missing))
        assert result.returncode == 2
        assert "scripts/write_dev_env.py" in result.stderr
        assert "Traceback" not in result.stderr


class TestProcfile:
    def test_procfile_runs_what_the_runner_runs(self):
        assert (REPO_ROOT / "Procfile").read_text() == run_stack.render_procfile()

    def test_processes_use_the_documented_ports(self):
        assert {p.name: p.default_port for p in run_stack.PROCESSES} == {
            "portfolio": 8003,
            "gateway": 8000,
            "frontend": 8080,
            "trading": 8101,
            "market": 8102,
            "strategy": 8103,
            "token": 8104,
            "execution": 8105,
            "monitoring": 8106,
        }

    def test_every_service_module_is_in_the_checkout(self):
        assert all(process.present for process in run_stack.PROCESSES)


class TestOneTimePassword:
    def test_has_every_character_class_and_24_characters(self):
        password = run_stack.one_time_password()
        assert len(password) == 24
        assert any(c.islower() for c in password)
        assert any(c.isupper() for c in password)
        assert any(c.isdigit() for c in password)
        assert any(c in "-_.!" for c in password)

    def test_is_different_every_time(self):
        assert len({run_stack.one_time_password() for _ in range(20)}) == 20


class TestCreateAdminOnly:
    def test_prints_a_password_on_a_new_database_and_nothing_after(self, stack_env, env_file):
        first = run_script(stack_env, "--create-admin", "--env-file", str(env_file))
        second = run_script(stack_env, "--create-admin", "--env-file", str(env_file))
        assert first.returncode == 0, first.stderr
        assert first.stdout.count(run_stack.PASSWORD_LABEL) == 1
        assert second.returncode == 0, second.stderr
        assert run_stack.PASSWORD_LABEL not in second.stdout
        assert "already has 1 user(s)" in second.stdout

    def test_unreachable_database_is_one_clear_line(self, stack_env, env_file):
        env = {
            **stack_env,
            "PORTFOLIO_DATABASE_URL": f"postgresql+asyncpg://nobody:sekrit@127.0.0.1:{free_port()}/x",
            "PORTFOLIO_DATABASE_CONNECT_TIMEOUT": "2",
        }
        result = run_script(env, "--create-admin", "--env-file", str(env_file))
        assert result.returncode == 1
        assert "run_stack: could not create the first admin user" in result.stderr
        assert "Traceback" not in result.stderr
        assert "sekrit" not in result.stderr
