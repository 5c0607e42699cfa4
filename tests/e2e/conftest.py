"""The whole stack as `make run` starts it, once per module, on PostgreSQL and free ports.

`python -m devstack` itself runs as a subprocess: a temporary env file of freshly
generated secrets (`SECRETS_PROVIDER=env`, what `make run` writes to `.env`), one
`LCT_<NAME>_PORT` per process, and `PORTFOLIO_DATABASE_URL` on a fresh PostgreSQL database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from devstack.databases import postgres_database
from devstack.processes import PROCESSES
from services.portfolio.__main__ import ONE_TIME_PASSWORD_LABEL
from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from tests.deploy.support import load_script
from tests.support.runner import StackRunner, distinct_free_ports

write_dev_env = load_script("scripts/write_dev_env.py")

PASSWORD = "a long enough e2e passphrase"
# Cheap Argon2id: the suite shares two cores with everything else; production keeps the defaults.
FAST_HASHING = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "1024",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}
# Short enough to wait out in a test, long enough that a request sees its own cache entry.
API_KEY_CACHE_SECONDS = 2.0
# The gateway reads the identity service's change feed this often: well inside the cache time.
IDENTITY_SYNC_SECONDS = 0.5
PASSWORD_ROTATION_DAYS = 30
# Settings of ours that a developer's shell must not leak into the stack under test.
OUR_PREFIXES = ("LCT_", "PORTFOLIO_", "GATEWAY_", "SECRETS_", "SECURITY__", "VAULT_", "AWS_")


@dataclass
class Stack:
    """The running stack: where each process listens and the database they share."""

    runner: StackRunner
    ports: dict[str, int]
    database_url: str
    access_log: Path
    identity: PortfolioIdentityService = field(repr=False)

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def frontend(self) -> str:
        return f"http://127.0.0.1:{self.ports['frontend']}"

    @property
    def operator_env(self) -> dict[str, str]:
        """What an operator exports before running the guide's blocks on this deployment."""
        return {
            "PORTFOLIO_DATABASE_URL": self.database_url,
            "SECRETS_PROVIDER": "env",
            **FAST_HASHING,
        }

    def user(self, *roles: str, prefix: str = "e2e") -> str:
        """Create a user with `PASSWORD` through the identity service; return the username."""
        username = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.identity.create_user(username, PASSWORD, roles=list(roles))
        return username

    def one_time_passwords(self) -> list[str]:
        """Every password the runner printed for the first admin."""
        label = ONE_TIME_PASSWORD_LABEL
        return [line.split(label, 1)[1].split()[0] for line in self.runner.lines if label in line]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("e2e-stack")
    env_file = directory / "stack.env"
    # 0600 like `make run`'s .env: it holds the secrets.
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(write_dev_env.render())
    names = [process.name for process in PROCESSES]
    ports = dict(zip(names, distinct_free_ports(len(names)), strict=True))
    access_log = directory / "access.log"
    with postgres_database() as database_url:
        env = {key: value for key, value in os.environ.items() if not key.startswith(OUR_PREFIXES)}
        env.update(FAST_HASHING)
        env.update(
            {
                "PORTFOLIO_DATABASE_URL": database_url,
                "PORTFOLIO_PASSWORD_ROTATION_DAYS": str(PASSWORD_ROTATION_DAYS),
                "GATEWAY_API_KEY_CACHE_SECONDS": str(API_KEY_CACHE_SECONDS),
                "GATEWAY_IDENTITY_SYNC_SECONDS": str(IDENTITY_SYNC_SECONDS),
                "GATEWAY_ACCESS_LOG": str(access_log),
                # The guide's sign-ins here are about the guide, not the second factor
                # (tests/api_gateway/test_mfa_e2e.py and the browser tests cover that).
                "PORTFOLIO_MFA_REQUIRED_ROLES": "",
            }
        )
        env.update({process.port_variable: str(ports[process.name]) for process in PROCESSES})
        runner = StackRunner(env, env_file)
        try:
            runner.wait_for("Ctrl-C stops everything.")
            settings = PortfolioSettings(
                database_url=database_url,
                password_rotation_days=PASSWORD_ROTATION_DAYS,
                argon2_time_cost=1,
                argon2_memory_cost=1024,
                argon2_parallelism=1,
            )
            with PortfolioIdentityService(settings=settings) as identity:
                yield Stack(runner, ports, database_url, access_log, identity)
            runner.stop()
        finally:
            runner.kill_leftovers()
