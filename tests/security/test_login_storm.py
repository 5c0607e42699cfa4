"""A storm of failed logins at the default Argon2id cost: the portfolio process stays under
its memory ceiling, the logins that fit are answered, the rest get a quick 503
`identity_busy` with Retry-After, and token calls and trades keep working meanwhile."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devstack.servers import ServerProcess
from tests.security.conftest import PASSWORD, Stack
from tests.support.stack import PORTFOLIO_APP, fast_identity

# The production cost (64 MiB per run): what the storm is about.
DEFAULT_ARGON2_ENV = {
    "PORTFOLIO_ARGON2_TIME_COST": "3",
    "PORTFOLIO_ARGON2_MEMORY_COST": "65536",
    "PORTFOLIO_ARGON2_PARALLELISM": "4",
}
# The ceiling the README documents for the default cost and hashing settings.
CEILING_MIB = 400
STORM = 64
WRONG = "not the password, only a guess"
# Bounds on waiting, far above what the work takes on a loaded machine; never speed checks.
PATIENCE_SECONDS = 120.0
RETRIES = 30


def memory_mib(pid: int, field_name: str) -> float:
    """Return `VmRSS` (now) or `VmHWM` (the peak so far) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"/proc/{pid}/status has no {field_name}")


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


@dataclass
class Target:
    """A portfolio process at the default cost and a gateway in front of it."""

    portfolio: ServerProcess
    gateway: ServerProcess
    trader: str
    _exit: ExitStack = field(repr=False)

    @property
    def pid(self) -> int:
        assert self.portfolio.process is not None
        return self.portfolio.process.pid


@pytest.fixture(
    params=[None, "4"],
    ids=["slots-from-cores", "slots-from-memory"],
)
def slots_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The default slot count of this machine, and the most the default memory budget
    allows (4 x 64 MiB in 256 MiB): what a machine with many cores gets."""
    return {} if request.param is None else {"PORTFOLIO_HASHING_CONCURRENCY": request.param}


@pytest.fixture
def target(
    stack: Stack, database_url: str, slots_env: dict[str, str], tmp_path: Path
) -> Iterator[Target]:
    with ExitStack() as exit_stack:
        identity = fast_identity(database_url)
        exit_stack.callback(identity.close)
        trader = f"storm-{uuid.uuid4().hex[:8]}"
        identity.create_user(trader, PASSWORD, roles=["portfolio"])
        env = {
            **stack.env,
            "PORTFOLIO_DATABASE_URL": database_url,
            **DEFAULT_ARGON2_ENV,
            **slots_env,
        }
        portfolio = exit_stack.enter_context(
            ServerProcess(PORTFOLIO_APP, env=env, log_path=tmp_path / "portfolio.log")
        )
        gateway = exit_stack.enter_context(
            ServerProcess(
                "services.api_gateway.app:app",
                env={
                    **env,
                    "PORTFOLIO_SERVICE_URL": portfolio.url,
                    "GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS": "100000",
                    "GATEWAY_IDENTITY_TIMEOUT_SECONDS": "60",
                },
                log_path=tmp_path / "gateway.log",
            )
        )
        yield Target(portfolio=portfolio, gateway=gateway, trader=trader, _exit=exit_stack)


async def login(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", json={"username": username, "password": password})


async def login_until_admitted(client: httpx.AsyncClient, username: str) -> httpx.Response:
    """Log in, honouring Retry-After while the identity service is busy."""
    for _ in range(RETRIES):
        response = await login(client, username, PASSWORD)
        if response.status_code != 503:
            return response
        await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
    return response


async def test_a_login_storm_stays_under_the_memory_ceiling_and_other_calls_keep_working(
    target: Target,
) -> None:
    limits = httpx.Limits(max_connections=STORM + 16, max_keepalive_connections=STORM + 16)
    async with httpx.AsyncClient(
        base_url=target.gateway.url, timeout=PATIENCE_SECONDS, limits=limits
    ) as client:
        first = await login_until_admitted(client, target.trader)
        assert first.status_code == 200, first.text
        bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
        resting_mib = memory_mib(target.pid, "VmRSS")

        storm_over = asyncio.Event()
        me_seconds: list[float] = []
        me_statuses: list[int] = []
        trade_statuses: list[int] = []
        trade_seconds: list[float] = []
        rss_samples: list[float] = []

        async def token_calls() -> None:
            while not storm_over.is_set():
                started = time.perf_counter()
                response = await client.get("/auth/me", headers=bearer)
                me_seconds.append(time.perf_counter() - started)
                me_statuses.append(response.status_code)
                await asyncio.sleep(0.02)

        async def trades() -> None:
            while not storm_over.is_set():
                started = time.perf_counter()
                response = await client.post(
                    "/api/portfolio/trades",
                    json={"symbol": "BTC-USD", "side": "buy", "quantity": "0.01", "price": "100"},
                    headers={**bearer, "Idempotency-Key": uuid.uuid4().hex},
                )
                trade_seconds.append(time.perf_counter() - started)
                trade_statuses.append(response.status_code)
                await asyncio.sleep(0.05)

        async def sample_memory() -> None:
            while not storm_over.is_set():
                rss_samples.append(memory_mib(target.pid, "VmRSS"))
                await asyncio.sleep(0.02)

        async def storm() -> list[httpx.Response]:
            try:
                return await asyncio.gather(
                    *(
                        login(client, f"nobody-{n}-{uuid.uuid4().hex[:6]}", WRONG)
                        for n in range(STORM)
                    ),
                    return_exceptions=False,
                )
            finally:
                storm_over.set()

        background = [asyncio.create_task(work()) for work in (token_calls, trades, sample_memory)]
        storm_started = time.perf_counter()
        answers, admitted = await asyncio.gather(
            storm(), login_until_admitted(client, target.trader)
        )
        storm_seconds = time.perf_counter() - storm_started
        storm_over.set()
        await asyncio.gather(*background)

    peak_mib = memory_mib(target.pid, "VmHWM")
    statuses = [answer.status_code for answer in answers]
    busy = [answer for answer in answers if answer.status_code == 503]
    print(
        f"\nstorm of {STORM}: resting RSS {resting_mib:.0f} MiB, peak {peak_mib:.0f} MiB "
        f"(sampled max {max(rss_samples, default=0):.0f}); "
        f"{statuses.count(401)} answered 401, {len(busy)} answered 503; "
        f"/auth/me p99 {p99(me_seconds) * 1000:.0f} ms, "
        f"median {statistics.median(me_seconds) * 1000:.0f} ms over {len(me_seconds)} calls; "
        f"trades p99 {p99(trade_seconds) * 1000:.0f} ms over {len(trade_seconds)}; "
        f"storm answered in {storm_seconds:.1f} s"
    )
    assert peak_mib <= CEILING_MIB, f"the portfolio process peaked at {peak_mib:.0f} MiB"
    # Every failed login got an answer: the wrong password, or a quick "busy, retry"
    # (how many fit depends on how fast this machine hashes right now).
    assert set(statuses) <= {401, 503}, statuses
    for answer in busy:
        assert answer.json()["error"]["code"] == "identity_busy"
        assert int(answer.headers["Retry-After"]) >= 1
    # A real user's login fits in (honouring Retry-After) while the storm lasts.
    assert admitted.status_code == 200, admitted.text
    # Calls that need no password check are never turned away by the storm.
    assert me_statuses
    assert set(me_statuses) == {200}
    assert trade_statuses
    assert set(trade_statuses) == {201}
