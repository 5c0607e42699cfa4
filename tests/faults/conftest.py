"""The fault suite's stack: real processes a test may stop, slow down and start again.

Everything here is private to the suite: its own PostgreSQL database (taken offline with
`ALLOW_CONNECTIONS false`, never the shared cluster), its own `redis-server` (killed, never
the shared one at 6379), its own stubs and identity service on fixed ports so a restarted
process is found where the gateway expects it.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from devstack.databases import POSTGRES_URL, postgres_database
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from services.portfolio.identity import PortfolioIdentityService
from tests.support.redis_server import RedisServer
from tests.support.stack import fast_identity, service_urls, stack_env, start_portfolio_and_stub

PASSWORD = "a long enough fault-suite password"
# Every faulty answer must come within this; the client gives up after it and fails the test.
BOUND_SECONDS = 15.0
UPSTREAM_TIMEOUT_SECONDS = 2


@dataclass
class FaultStack:
    """The processes, each stoppable and restartable on the same port."""

    env: dict[str, str] = field(repr=False)
    database_url: str = field(repr=False)
    identity: PortfolioIdentityService
    portfolio: ServerProcess
    trading: ServerProcess
    slow: ServerProcess
    redis: RedisServer
    gateway: ServerProcess
    logs: Path
    _exit: ExitStack = field(repr=False)

    @property
    def database_name(self) -> str:
        return str(make_url(self.database_url).database)

    def user(self, *roles: str, api_key: bool = False) -> tuple[str, str | None]:
        name = f"fault-{uuid.uuid4().hex[:10]}"
        self.identity.create_user(name, PASSWORD, roles=list(roles))
        key = self.identity.rotate_api_key(name, secrets.token_hex(32)).api_key if api_key else None
        return name, key

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.gateway.url, timeout=BOUND_SECONDS)

    def login(self, username: str) -> dict[str, str]:
        with self.client() as client:
            response = client.post("/auth/token", json={"username": username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def set_database_online(self, online: bool) -> None:
        """Take the suite's database offline (refuse and cut connections) or back online."""
        name = self.database_name

        async def run() -> None:
            conn = await asyncpg.connect(
                make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(False)
            )
            try:
                await conn.execute(
                    f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(online).lower()}'
                )
                if not online:
                    await conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()",
                        name,
                    )
            finally:
                await conn.close()

        asyncio.run(run())


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    logs = tmp_path_factory.mktemp("faults")
    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        env = stack_env(database_url, PORTFOLIO_DATABASE_CONNECT_TIMEOUT="3")
        env["TEST_ASSERTION_PUBLIC_KEY"] = env["GATEWAY_ASSERTION_PUBLIC_KEY"]
        identity = fast_identity(database_url)
        stack.callback(identity.close)
        portfolio, trading = start_portfolio_and_stub(stack, env, logs)
        slow = stack.enter_context(
            ServerProcess("tests.api_gateway.upstream:app", env=env, log_path=logs / "slow.log")
        )
        redis = stack.enter_context(RedisServer(logs))
        gateway_env = {
            **env,
            **service_urls(portfolio.url, trading.url),
            "MARKET_SERVICE_URL": f"{slow.url}/market",
            "GATEWAY_UPSTREAM_TIMEOUT_SECONDS": str(UPSTREAM_TIMEOUT_SECONDS),
            "GATEWAY_IDENTITY_TIMEOUT_SECONDS": "5",
            "GATEWAY_STATE_URL": redis.url,
            "GATEWAY_STATE_TIMEOUT_SECONDS": "0.5",
            "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000",
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
        }
        gateway = stack.enter_context(
            ServerProcess(GATEWAY_APP, env=gateway_env, log_path=logs / "gateway.log")
        )
        yield FaultStack(
            env=gateway_env,
            database_url=database_url,
            identity=identity,
            portfolio=portfolio,
            trading=trading,
            slow=slow,
            redis=redis,
            gateway=gateway,
            logs=logs,
            _exit=stack,
        )
