"""What `make run` sees, on free ports: a fresh `.env`, a new SQLite database, cheap hashing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.processes import PROCESSES
from tests.deploy.support import load_script
from tests.support.runner import StackRunner, distinct_free_ports

write_dev_env = load_script("scripts/write_dev_env.py")

# Cheap Argon2 for tests only; production defaults stay as they are.
FAST_HASHING = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}


@pytest.fixture
def ports() -> dict[str, int]:
    return dict(
        zip(
            [process.name for process in PROCESSES],
            distinct_free_ports(len(PROCESSES)),
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
    for process in PROCESSES:
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
