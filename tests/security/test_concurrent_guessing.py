"""Guesses sent all at once: every throttle takes its attempt before the password is checked,
so at most the limit is checked however many arrive together (gateway on in-memory and
Redis state, identity store on SQLite and PostgreSQL), and every spelling of a name is one
account to the gateway's throttle and its access log."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from devstack.databases import SHARED_REDIS_URL, shared_prefix, sqlite_database
from devstack.servers import ServerProcess
from services.portfolio.identity import PortfolioIdentityService
from tests.security.conftest import PASSWORD, Stack
from tests.support.stack import PORTFOLIO_APP, fast_identity

WRONG = "not the password, just a guess"
NEW_PASSWORD = "a brand new passphrase for the account"
BURST = 40
# Below the identity store's own threshold (5), so a 429 here is the gateway's.
ACCOUNT_LIMIT = 3
ADDRESS_LIMIT = 4
IDENTITY_THRESHOLD = 5


@pytest.fixture(params=["memory", "redis"])
def state_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Gateway settings for its state: in this process, or in the shared Redis."""
    if request.param == "memory":
        yield {}
        return
    with shared_prefix() as prefix:
        yield {"GATEWAY_STATE_URL": SHARED_REDIS_URL, "GATEWAY_STATE_PREFIX": prefix}


async def at_once(url: str, path: str, bodies: list[dict[str, str]], **headers: str) -> list[int]:
    """POST every body at the same time, each on its own connection; return the statuses."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        responses = await asyncio.gather(
            *(client.post(path, json=body, headers=headers) for body in bodies)
        )
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.json()["error"]["code"] == "too_many_attempts"
        assert int(refused.headers["Retry-After"]) >= 1
    return [response.status_code for response in responses]


def checked_at_most(statuses: list[int], limit: int) -> None:
    """Assert that at most `limit` passwords were judged (401) and the rest refused (429)."""
    judged = statuses.count(401)
    assert 1 <= judged <= limit, statuses
    assert statuses.count(429) == len(statuses) - judged, statuses


def login(url: str, username: str, password: str) -> httpx.Response:
    return httpx.post(url + "/auth/token", json={"username": username, "password": password})


def full_width(name: str) -> str:
    """The name in upper-case full-width characters (NFKC folds them back)."""
    return "".join(chr(ord(c.upper()) + 0xFEE0) if "!" <= c <= "~" else c for c in name)


async def test_guesses_at_one_account_sent_at_once_are_checked_up_to_the_limit(
    stack: Stack, state_env: dict[str, str]
):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS=str(ACCOUNT_LIMIT), **state_env)
    name, _ = stack.user("trading")
    body = {"username": name, "password": WRONG}
    checked_at_most(await at_once(gateway.url, "/auth/token", [body] * BURST), ACCOUNT_LIMIT)
    refused = login(gateway.url, name, PASSWORD)
    assert refused.status_code == 429
    assert "access_token" not in refused.text


async def test_guesses_at_many_accounts_sent_at_once_are_checked_up_to_the_address_limit(
    stack: Stack, state_env: dict[str, str]
):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS_PER_ADDRESS=str(ADDRESS_LIMIT), **state_env)
    bodies = [
        {"username": f"nobody-{n}-{uuid.uuid4().hex[:6]}", "password": WRONG} for n in range(BURST)
    ]
    checked_at_most(await at_once(gateway.url, "/auth/token", bodies), ADDRESS_LIMIT)
    name, _ = stack.user("trading")
    assert login(gateway.url, name, PASSWORD).status_code == 429


async def test_password_rotations_sent_at_once_are_checked_up_to_the_limit(
    stack: Stack, state_env: dict[str, str]
):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS=str(ACCOUNT_LIMIT), **state_env)
    name, _ = stack.user("trading")
    body = {"username": name, "current_password": WRONG, "new_password": NEW_PASSWORD}
    statuses = await at_once(gateway.url, "/auth/password/rotate", [body] * BURST)
    checked_at_most(statuses, ACCOUNT_LIMIT)
    rotate = {"username": name, "current_password": PASSWORD, "new_password": NEW_PASSWORD}
    assert httpx.post(gateway.url + "/auth/password/rotate", json=rotate).status_code == 429
    # Nothing was rotated: the password is still the old one once the lock is lifted.
    assert stack.identity.authenticate(name, PASSWORD).username == name


@pytest.fixture(params=["sqlite", "postgres"])
def identity_api(
    request: pytest.FixtureRequest, stack: Stack, tmp_path: Path
) -> Iterator[tuple[str, PortfolioIdentityService]]:
    """The identity store's own HTTP API (portfolio) on SQLite, or on the suite's PostgreSQL;
    yields its URL and a facade on the same database to create users with."""
    if request.param == "postgres":
        yield stack.portfolio_url, stack.identity
        return
    with ExitStack() as exit_stack:
        url = exit_stack.enter_context(sqlite_database(tmp_path))
        identity = fast_identity(url)  # migrates the new file before the process opens it
        exit_stack.callback(identity.close)
        portfolio = exit_stack.enter_context(
            ServerProcess(
                PORTFOLIO_APP,
                env={**stack.env, "PORTFOLIO_DATABASE_URL": url},
                log_path=stack.logs / f"portfolio-sqlite-{uuid.uuid4().hex[:6]}.log",
            )
        )
        yield portfolio.url, identity


async def test_the_identity_store_checks_concurrent_guesses_up_to_its_threshold(
    stack: Stack, identity_api: tuple[str, PortfolioIdentityService]
):
    url, identity = identity_api
    name = f"sec-{uuid.uuid4().hex[:10]}"
    identity.create_user(name, PASSWORD, roles=["trading"])
    token = {"X-Service-Token": stack.env["IDENTITY_SERVICE_TOKEN"]}
    body = {"username": name, "password": WRONG}
    statuses = await at_once(url, "/internal/identity/authenticate", [body] * BURST, **token)
    checked_at_most(statuses, IDENTITY_THRESHOLD)
    right = {"username": name, "password": PASSWORD}
    refused = httpx.post(url + "/internal/identity/authenticate", json=right, headers=token)
    assert refused.status_code == 429


def test_another_spelling_of_a_locked_account_is_refused_by_the_gateways_lock(stack: Stack):
    gateway = stack.gateway(GATEWAY_LOGIN_MAX_ATTEMPTS=str(ACCOUNT_LIMIT))
    name, _ = stack.user("trading")
    for _ in range(ACCOUNT_LIMIT):
        assert login(gateway.url, name, WRONG).status_code == 401
    # The identity store counted only ACCOUNT_LIMIT failures: this refusal is the gateway's.
    for spelling in (full_width(name), f"  {name.upper()} "):
        refused = login(gateway.url, spelling, PASSWORD)
        assert refused.status_code == 429, spelling
        assert refused.json()["error"]["code"] == "too_many_attempts"


def test_the_access_log_names_the_account_not_the_spelling_presented(stack: Stack):
    access_log = stack.logs / f"access-{uuid.uuid4().hex[:6]}.log"
    gateway = stack.gateway(GATEWAY_ACCESS_LOG=str(access_log))
    name, _ = stack.user("trading")
    assert login(gateway.url, full_width(name), PASSWORD).status_code == 200
    [entry] = wait_for_lines(access_log, path="/auth/token")
    assert entry["user"] == name
    assert entry["status"] == 200


def wait_for_lines(
    access_log: Path, *, path: str, timeout: float = 15.0
) -> list[dict[str, object]]:
    """Return the access-log entries for `path`, once there is at least one."""
    deadline = time.monotonic() + timeout
    while True:
        text = access_log.read_text(encoding="utf-8") if access_log.exists() else ""
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        found = [entry for entry in entries if entry.get("path") == path]
        if found:
            return found
        assert time.monotonic() < deadline, f"no access-log line for {path}"
        time.sleep(0.1)
