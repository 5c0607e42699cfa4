"""`python -m bench.load`: a bounded mixed load on loopback, and proof nothing was lost.

For `--duration` seconds (60 by default) `--concurrency` clients send a mix of logins,
bearer and API-key calls to every downstream service, portfolio reads and trades (some
retried with the same Idempotency-Key, as a client that lost an answer would) through the
gateway(s) to the real processes on a fresh PostgreSQL database. It reports requests per
second and p50/p99 latency per kind, counts every answer that is not the expected one as
an error, then pages through every user's trades and positions to check that each trade
was booked exactly once. Exit status 1 on any error or booking mismatch.

`--gateways 2` runs two gateway replicas sharing the Redis at 127.0.0.1:6379 (a key prefix
of their own) and spreads the clients over both.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import secrets
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

import aiohttp

from bench.stack import FAST_SERVER, service_env
from devstack.databases import SHARED_REDIS_URL, delete_prefix, postgres_database, unique_prefix
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from shared.roles import SERVICES, Service

PASSWORD = "load test password that is long enough"  # noqa: S105  # nosec B105 - throwaway
STUBS = [service for service in SERVICES if service is not Service.PORTFOLIO]
# A login shed with 503 + Retry-After is tried again after the wait, this many times at most.
LOGIN_RETRIES = 3
# kind -> weight; logins are few because each one is a full Argon2id check.
MIX: dict[str, int] = {
    "login": 1,
    "jwt call": 30,
    "api-key call": 30,
    "positions": 9,
    "trade": 25,
    "trade retry": 5,
}


@dataclass
class Account:
    """One load-test user: all roles, a token and an API key."""

    username: str
    api_key: str
    token: str = ""


@dataclass
class LoadStack:
    """Where the gateways listen, and the users to drive them with."""

    gateway_urls: list[str]
    accounts: list[Account]
    gateway_pids: list[int]


@dataclass
class Report:
    """What the clients saw."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    # Idempotency-Key -> (username, quantity) of every trade the portfolio acknowledged.
    trades: dict[str, tuple[str, Decimal]] = field(default_factory=dict)
    elapsed: float = 0.0
    # Logins answered 503 + Retry-After (identity service busy hashing), waited out and retried.
    shed: int = 0

    @property
    def requests(self) -> int:
        return sum(len(values) for values in self.latencies.values())

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(f"{kind}: {detail[:300]}")


def percentile(values: list[float], fraction: float) -> float:
    """Return the value below which `fraction` of `values` lie (nearest rank)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


@contextmanager
def running_stack(
    root: Path, *, users: int, gateways: int = 1, fast_hashing: bool = False
) -> Iterator[LoadStack]:
    """Start portfolio (fresh PostgreSQL), every stub and the gateway(s); create the users."""
    from services.portfolio.config import PortfolioSettings
    from services.portfolio.identity import PortfolioIdentityService

    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        # Every client logs in from 127.0.0.1.
        env = service_env(database_url, GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS="1000000")
        settings = PortfolioSettings(database_url=database_url)
        if fast_hashing:
            # Tests only: cheap Argon2id; the benchmark keeps the production parameters.
            hashing = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}
            env.update({f"PORTFOLIO_{k.upper()}": str(v) for k, v in hashing.items()})
            settings = settings.model_copy(update=hashing)
        accounts = []
        with PortfolioIdentityService(settings=settings) as identity:
            for n in range(users):
                name = f"load-{n:03d}"
                identity.create_user(name, PASSWORD, roles=[s.value for s in SERVICES])
                key = identity.rotate_api_key(name, secrets.token_hex(32)).api_key
                accounts.append(Account(username=name, api_key=key))
        portfolio = stack.enter_context(
            ServerProcess("services.portfolio.app:app", env=env, log_path=root / "portfolio.log")
        )
        gateway_env = {
            **env,
            "PORTFOLIO_SERVICE_URL": portfolio.url,
            "GATEWAY_ACCESS_LOG": str(root / "gateway-access.log"),
        }
        for service in STUBS:
            stub = stack.enter_context(
                ServerProcess(
                    "services.stub.app:app",
                    env={**env, "STUB_SERVICE_NAME": service.value},
                    log_path=root / f"{service.value}.log",
                    extra_args=FAST_SERVER,
                )
            )
            gateway_env[f"{service.value.upper()}_SERVICE_URL"] = stub.url
        if gateways > 1:
            prefix = unique_prefix()
            stack.callback(delete_prefix, SHARED_REDIS_URL, prefix)
            gateway_env.update(GATEWAY_STATE_URL=SHARED_REDIS_URL, GATEWAY_STATE_PREFIX=prefix)
        started = [
            stack.enter_context(
                ServerProcess(
                    GATEWAY_APP,
                    env=gateway_env,
                    log_path=root / f"gateway-{n}.log",
                    extra_args=FAST_SERVER,
                )
            )
            for n in range(gateways)
        ]
        yield LoadStack(
            gateway_urls=[gateway.url for gateway in started],
            accounts=accounts,
            gateway_pids=[g.process.pid for g in started if g.process is not None],
        )


async def _login(
    http: aiohttp.ClientSession, url: str, account: Account, report: Report | None = None
) -> int:
    """Sign in; a 503 with Retry-After (the identity service's hashing slots are all taken,
    its designed answer to a login storm) is waited out and tried again, as a client should,
    up to `LOGIN_RETRIES` times, and counted in the report."""
    attempt = 0
    while True:
        async with http.post(
            url + "/auth/token", json={"username": account.username, "password": PASSWORD}
        ) as response:
            body = await response.json(content_type=None)
            if response.status == 200:
                account.token = body["access_token"]
            retry_after = response.headers.get("Retry-After")
            if response.status != 503 or retry_after is None or attempt == LOGIN_RETRIES:
                return response.status
        attempt += 1
        if report is not None:
            report.shed += 1
        await asyncio.sleep(min(float(retry_after), 5.0))


async def _client(
    worker: int,
    http: aiohttp.ClientSession,
    stack: LoadStack,
    report: Report,
    done: Callable[[], bool],
    rng: random.Random,
) -> None:
    account = stack.accounts[worker % len(stack.accounts)]
    url = stack.gateway_urls[worker % len(stack.gateway_urls)]
    kinds, weights = list(MIX), list(MIX.values())
    last_trade: tuple[str, dict[str, str]] | None = None
    while not done():
        kind = rng.choices(kinds, weights)[0]
        if kind == "trade retry" and last_trade is None:
            kind = "trade"
        started = time.perf_counter()
        expected: tuple[int, ...] = (200,)
        try:
            if kind == "login":
                status, expected = await _login(http, url, account, report), (200,)
            elif kind in ("jwt call", "api-key call"):
                service = rng.choice(STUBS).value
                headers = (
                    {"Authorization": f"Bearer {account.token}"}
                    if kind == "jwt call"
                    else {"X-API-Key": account.api_key}
                )
                async with http.get(f"{url}/api/{service}/orders/7", headers=headers) as response:
                    await response.read()
                    status, expected = response.status, (200,)
            elif kind == "positions":
                async with http.get(
                    url + "/api/portfolio/positions", headers={"X-API-Key": account.api_key}
                ) as response:
                    await response.read()
                    status, expected = response.status, (200,)
            else:
                if kind == "trade" or last_trade is None:
                    quantity = Decimal(rng.randint(1, 1000)) / 100
                    body = {
                        "symbol": "BTC-USD",
                        "side": "buy",
                        "quantity": str(quantity),
                        "price": str(rng.randint(20_000, 60_000)),
                    }
                    last_trade = (uuid.uuid4().hex, body)
                key, body = last_trade
                headers = {"Authorization": f"Bearer {account.token}", "Idempotency-Key": key}
                async with http.post(
                    url + "/api/portfolio/trades", json=body, headers=headers
                ) as response:
                    await response.read()
                    status = response.status
                    # A first booking is 201, a replay of the same key 200.
                    expected = (201, 200)
                    if status in expected:
                        report.trades[key] = (account.username, Decimal(body["quantity"]))
        except (aiohttp.ClientError, TimeoutError) as exc:
            report.error(kind, f"{type(exc).__name__}: {exc}")
            continue
        report.latencies[kind].append((time.perf_counter() - started) * 1000)
        if status not in expected:
            report.error(kind, f"HTTP {status}")


async def drive(
    stack: LoadStack,
    *,
    duration: float,
    concurrency: int,
    seed: int = 7,
    every_kind_within: float | None = None,
) -> Report:
    """Run the mix for `duration` seconds; return what the clients saw. With
    `every_kind_within`, go on past `duration` until every kind of the mix has been answered,
    for at most that many seconds in all: a short run on a loaded machine may draw no login."""
    report = Report()
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        for account in stack.accounts:
            status = await _login(http, stack.gateway_urls[0], account)
            if status != 200:
                raise SystemExit(f"could not log in {account.username}: HTTP {status}")
        started = time.monotonic()
        deadline = started + duration
        cutoff = started + max(duration, every_kind_within or 0.0)

        def done() -> bool:
            now = time.monotonic()
            if now < deadline:
                return False
            return now >= cutoff or report.latencies.keys() >= MIX.keys()

        await asyncio.gather(
            *(
                _client(n, http, stack, report, done, random.Random(seed + n))  # noqa: S311  # nosec B311 - load mix, not security
                for n in range(concurrency)
            )
        )
        report.elapsed = time.monotonic() - started
    return report


async def booking_problems(stack: LoadStack, report: Report) -> list[str]:
    """Page through every user's trades and positions; say what does not add up."""
    problems: list[str] = []
    expected_by_user: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for key, (username, quantity) in report.trades.items():
        expected_by_user[username][key] = quantity
    url = stack.gateway_urls[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for account in stack.accounts:
            headers = {"X-API-Key": account.api_key}
            booked: Counter[str] = Counter()
            cursor: str | None = None
            while True:
                params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
                async with http.get(
                    url + "/api/portfolio/trades", params=params, headers=headers
                ) as response:
                    page = await response.json()
                booked.update(trade["idempotency_key"] for trade in page["trades"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            expected = expected_by_user.get(account.username, {})
            doubled = [key for key, count in booked.items() if count > 1]
            missing = set(expected) - set(booked)
            unknown = set(booked) - set(expected)
            if doubled or missing or unknown:
                problems.append(
                    f"{account.username}: {len(doubled)} booked twice, {len(missing)} "
                    f"acknowledged but not booked, {len(unknown)} booked but never acknowledged"
                )
            async with http.get(url + "/api/portfolio/positions", headers=headers) as response:
                positions = (await response.json())["positions"]
            held = sum((Decimal(p["quantity"]) for p in positions), Decimal(0))
            if held != sum(expected.values(), Decimal(0)):
                problems.append(
                    f"{account.username}: position {held} != sum of its trades "
                    f"{sum(expected.values(), Decimal(0))}"
                )
    return problems


def render(report: Report, problems: list[str], *, concurrency: int, gateways: int) -> str:
    """Return the report as text."""
    lines = [
        f"{concurrency} clients, {report.elapsed:.0f} s, {gateways} gateway(s), "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        f"{'kind':<14}{'requests':>10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
    ]
    for kind in MIX:
        values = report.latencies.get(kind, [])
        lines.append(
            f"{kind:<14}{len(values):>10}{len(values) / max(report.elapsed, 1e-9):>9.0f}"
            f"{percentile(values, 0.50):>9.1f}{percentile(values, 0.99):>9.1f}"
            f"{report.errors[kind]:>8}"
        )
    every = [v for values in report.latencies.values() for v in values]
    lines.append(
        f"{'all':<14}{len(every):>10}{len(every) / max(report.elapsed, 1e-9):>9.0f}"
        f"{percentile(every, 0.50):>9.1f}{percentile(every, 0.99):>9.1f}"
        f"{sum(report.errors.values()):>8}"
    )
    lines.append(
        f"logins shed by the busy identity service (503 + Retry-After) and retried: {report.shed}"
    )
    lines.append(
        f"trades acknowledged: {len(report.trades)}; booked exactly once: "
        + ("yes" if not problems else "NO")
    )
    lines += [f"  error: {sample}" for sample in report.error_samples]
    lines += [f"  booking: {problem}" for problem in problems]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the load, print the report; exit 1 on any error or booking mismatch."""
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent clients (32)")
    parser.add_argument("--users", type=int, default=8, help="users the clients share (8)")
    parser.add_argument(
        "--gateways", type=int, default=1, help="gateway replicas (1; 2+ share Redis)"
    )
    args = parser.parse_args(argv)
    with (
        TemporaryDirectory(prefix="lct-load-") as tmp,
        running_stack(Path(tmp), users=args.users, gateways=args.gateways) as stack,
    ):
        print(f"  driving for {args.duration:.0f} s ...", file=sys.stderr, flush=True)
        report = asyncio.run(drive(stack, duration=args.duration, concurrency=args.concurrency))
        problems = asyncio.run(booking_problems(stack, report))
    print(render(report, problems, concurrency=args.concurrency, gateways=args.gateways))
    return 1 if report.errors or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
