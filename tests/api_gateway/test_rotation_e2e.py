"""Both signing keys rotate under load with two running gateways and nothing restarted.

The stack (portfolio, a trading stub, gateways A and B) reads its secrets from a real
OpenBao dev server (one secret and the root token, or the per-service layout with each
service's own AppRole, as compose runs it), or on the env provider from the `.env` file
`make run` hands every process (`SECRETS_ENV_FILE`). The rotations run as an operator runs them,
`python -m services.api_gateway rotate-...`, while workers keep logging in on one gateway
and calling a service with that token on the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import hvac.exceptions
import jwt
import pytest
from pydantic import SecretStr

from devstack import REPO_ROOT
from devstack.databases import postgres_database
from devstack.servers import ServerProcess
from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from shared.keys import key_id, load_private_key, load_public_key
from shared.roles import SERVICES
from shared.secrets import SecretRegistry, SecretsSettings
from shared.secrets.envfile import read_env_file, write_env_values
from shared.secrets.generate import generate_secrets
from shared.secrets.layout import home_of, readable_paths
from shared.secrets.provision import provision_vault
from tests.api_gateway.conftest import FAST_ARGON2, PASSWORD
from tests.support.openbao_dev import OpenBaoDev

pytestmark = pytest.mark.e2e

VAULT_PATH = "legacycointrader"
# Short, so a rotation is taken up within seconds; gateways sign with a new key one
# interval plus a 2 s margin after they read it.
TTL = "1"
# Read (1 s) + activation (1 s + 2 s) + a slow read under load.
TAKEN_UP_WITHIN = 12.0
USERS = ("rot-alice", "rot-bob")
REGISTRY = SecretRegistry.load()


@dataclass
class Stack:
    gateways: list[ServerProcess]
    env: dict[str, str]
    read_secrets: Callable[[], dict[str, str]]
    write_secret: Callable[[str, str], None]
    start_gateway: Callable[[str], ServerProcess]
    processes: list[ServerProcess] = field(default_factory=list)

    def rotate(self, command: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "services.api_gateway", command],
            cwd=REPO_ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def pids(self) -> list[int]:
        return [process.process.pid for process in self.processes if process.process]


@pytest.fixture
def ttl() -> str:
    return TTL


@pytest.fixture(params=["vault", "vault-approle", "env-file"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, ttl: str) -> Iterator[Stack]:
    initial = generate_secrets()
    with ExitStack() as exit_stack:

        def service_env(service: str) -> dict[str, str]:
            return secrets_env

        if request.param == "vault-approle":
            # As compose runs it: the per-service layout, each service its own AppRole; the
            # rotation commands run with the root token, as vault-init runs them.
            bao = exit_stack.enter_context(OpenBaoDev(log_path=tmp_path / "bao.log"))
            credentials = tmp_path / "credentials"
            secrets_env = {**bao.env(VAULT_PATH), "VAULT_SECRET_LAYOUT": "per-service"}
            provision_vault(
                SecretsSettings(
                    secrets_provider="vault",
                    vault_addr=bao.url,
                    vault_token=SecretStr(bao.root_token),
                    vault_secret_path=f"secret/{VAULT_PATH}",
                    vault_secret_layout="per-service",
                ),
                credentials,
                generate=lambda: initial,
            )

            def service_env(service: str) -> dict[str, str]:
                env = {k: v for k, v in secrets_env.items() if k != "VAULT_TOKEN"}
                return {
                    **env,
                    "VAULT_ROLE_ID_FILE": str(credentials / service / "role_id"),
                    "VAULT_SECRET_ID_FILE": str(credentials / service / "secret_id"),
                }

            def read_secrets() -> dict[str, str]:
                merged: dict[str, str] = {}
                for path in readable_paths(REGISTRY, None):
                    with suppress(hvac.exceptions.InvalidPath):
                        merged.update(bao.read(f"{VAULT_PATH}/{path}"))
                return merged

            def write_secret(name: str, value: str) -> None:
                path = f"{VAULT_PATH}/{home_of(name, REGISTRY)}"
                bao.write(path, {**bao.read(path), name: value})
        elif request.param == "vault":
            bao = exit_stack.enter_context(OpenBaoDev(log_path=tmp_path / "bao.log"))
            bao.write(VAULT_PATH, initial)
            secrets_env = bao.env(VAULT_PATH)

            def read_secrets() -> dict[str, str]:
                return {key: str(value) for key, value in bao.read(VAULT_PATH).items()}

            def write_secret(name: str, value: str) -> None:
                bao.write(VAULT_PATH, {**bao.read(VAULT_PATH), name: value})
        else:
            env_file = tmp_path / ".env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in initial.items()))
            env_file.chmod(0o600)
            # As `make run` does: the file's values in the environment, and its path.
            secrets_env = {"SECRETS_PROVIDER": "env", **initial, "SECRETS_ENV_FILE": str(env_file)}

            def read_secrets() -> dict[str, str]:
                return read_env_file(env_file)

            def write_secret(name: str, value: str) -> None:
                write_env_values(env_file, {name: value})

        database_url = exit_stack.enter_context(postgres_database())
        identity = PortfolioIdentityService(
            settings=PortfolioSettings(
                database_url=database_url,
                argon2_time_cost=1,
                argon2_memory_cost=8,
                argon2_parallelism=1,
            )
        )
        exit_stack.callback(identity.close)
        for username in USERS:
            identity.create_user(username, PASSWORD, roles=["trading"])
        env = {**secrets_env, "SECRETS_CACHE_TTL_SECONDS": ttl}
        portfolio = exit_stack.enter_context(
            ServerProcess(
                "services.portfolio.app:app",
                env={
                    **env,
                    **service_env("portfolio"),
                    **FAST_ARGON2,
                    "PORTFOLIO_DATABASE_URL": database_url,
                },
                log_path=tmp_path / "portfolio.log",
            )
        )
        stub = exit_stack.enter_context(
            ServerProcess(
                "services.stub.app:app",
                env={**env, **service_env("stub"), "STUB_SERVICE_NAME": "trading"},
                log_path=tmp_path / "trading.log",
            )
        )
        gateway_env = {
            **env,
            **service_env("gateway"),
            **{f"{s.value.upper()}_SERVICE_URL": stub.url for s in SERVICES},
            "PORTFOLIO_SERVICE_URL": portfolio.url,
            "GATEWAY_ACCESS_LOG": str(tmp_path / "access.log"),
        }

        def start_gateway(name: str) -> ServerProcess:
            return exit_stack.enter_context(
                ServerProcess(
                    "services.api_gateway.app:app",
                    env=gateway_env,
                    log_path=tmp_path / f"gateway-{name}.log",
                )
            )

        gateways = [start_gateway(name) for name in ("a", "b")]
        yield Stack(
            gateways=gateways,
            # The rotation commands count the not-before from the services' interval.
            env={**secrets_env, "SECRETS_CACHE_TTL_SECONDS": ttl},
            read_secrets=read_secrets,
            write_secret=write_secret,
            start_gateway=start_gateway,
            processes=[portfolio, stub, *gateways],
        )


class Load:
    """Workers that log in on one gateway and call the trading stub on the other."""

    def __init__(self, stack: Stack, old_token: str, workers: int = 4) -> None:
        self.urls = [gateway.url for gateway in stack.gateways]
        self.old_token = old_token
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self.kids: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._work, args=(index,), daemon=True)
            for index in range(workers)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _record(self, what: str, response: httpx.Response) -> None:
        with self._lock:
            self.outcomes[what] += 1
            if response.status_code != 200:
                self.failures.append(f"{what}: {response.status_code} {response.text[:200]}")

    def _work(self, index: int) -> None:
        username = USERS[index % len(USERS)]
        login_on, call_on = self.urls[index % 2], self.urls[(index + 1) % 2]
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                login = client.post(
                    login_on + "/auth/token", json={"username": username, "password": PASSWORD}
                )
                self._record("login", login)
                if login.status_code != 200:
                    continue
                token = login.json()["access_token"]
                with self._lock:
                    self.kids[jwt.get_unverified_header(token)["kid"]] += 1
                for bearer, what in ((token, "new token"), (self.old_token, "old token")):
                    response = client.get(
                        call_on + "/api/trading/orders",
                        headers={"Authorization": f"Bearer {bearer}"},
                    )
                    self._record(what, response)


def login(url: str, username: str = USERS[0]) -> str:
    response = httpx.post(url + "/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def kid_of(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def wait_for(condition: Callable[[], bool], within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def jwks_kids(url: str) -> set[str]:
    return {key["kid"] for key in httpx.get(url + "/.well-known/jwks.json").json()["keys"]}


def test_both_keys_rotate_under_load_with_zero_failed_requests(stack: Stack):
    before = stack.read_secrets()
    old_kid = key_id(load_private_key(before["GATEWAY_JWT_PRIVATE_KEY"]))
    old_assertion_public = before["GATEWAY_ASSERTION_PUBLIC_KEY"]
    old_token = login(stack.gateways[0].url)
    assert kid_of(old_token) == old_kid
    pids = stack.pids()

    with Load(stack, old_token) as load:
        time.sleep(1.5)
        printed = stack.rotate("rotate-signing-key")
        after = stack.read_secrets()
        new_kid = key_id(load_private_key(after["GATEWAY_JWT_PRIVATE_KEY"]))
        assert new_kid != old_kid
        assert new_kid in printed
        assert "PRIVATE" not in printed.upper().replace("GATEWAY_JWT_PRIVATE_KEY", "")
        assert after["GATEWAY_JWT_PRIVATE_KEY"] not in printed
        # The current public key moved to the previous-key secret.
        assert key_id(load_public_key(after["GATEWAY_JWT_PREVIOUS_PUBLIC_KEY"])) == old_kid

        stack.rotate("rotate-assertion-key")
        rotated = stack.read_secrets()
        assert rotated["GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY"] == old_assertion_public
        assert rotated["GATEWAY_ASSERTION_PUBLIC_KEY"] != old_assertion_public

        # Both gateways sign with the new key within the interval, the stubs and the
        # other gateway already knowing it.
        for gateway in stack.gateways:
            assert wait_for(lambda g=gateway: kid_of(login(g.url)) == new_kid, TAKEN_UP_WITHIN)
        # A second assertion rotation: the first key is accepted no more, so the load
        # only stays clean if the gateways really moved on to the second one.
        time.sleep(TAKEN_UP_WITHIN / 2)
        stack.rotate("rotate-assertion-key")
        time.sleep(TAKEN_UP_WITHIN)

    assert load.failures == []
    assert load.outcomes["login"] >= 20
    assert load.outcomes["old token"] == load.outcomes["new token"] == load.outcomes["login"]
    assert set(load.kids) == {old_kid, new_kid}
    for gateway in stack.gateways:
        # Tokens issued before the rotation keep working; jwks lists both keys.
        response = httpx.get(
            gateway.url + "/api/trading/orders", headers={"Authorization": f"Bearer {old_token}"}
        )
        assert response.status_code == 200
        assert jwks_kids(gateway.url) == {old_kid, new_kid}
        assert kid_of(login(gateway.url)) == new_kid
    # Nothing restarted.
    assert stack.pids() == pids
    assert all(process.process and process.process.poll() is None for process in stack.processes)


def test_a_rotated_service_token_is_taken_up_under_load_with_zero_failed_requests(
    stack: Stack,
):
    old = stack.read_secrets()["IDENTITY_SERVICE_TOKEN"]
    new = "rotated-service-token-" + "n" * 32
    portfolio = stack.processes[0].url

    def users_with(token: str) -> int:
        return httpx.get(
            portfolio + "/internal/identity/users", headers={"X-Service-Token": token}
        ).status_code

    assert (users_with(old), users_with(new)) == (200, 401)
    with Load(stack, login(stack.gateways[0].url)) as load:
        time.sleep(1.5)
        stack.write_secret("IDENTITY_SERVICE_TOKEN", new)
        # The old token is refused and the new one accepted once portfolio read it.
        assert wait_for(lambda: (users_with(old), users_with(new)) == (401, 200), TAKEN_UP_WITHIN)
        time.sleep(3)
    # Whichever side read the new token first, the other re-read it on the refusal: the
    # gateways' logins never failed in between.
    assert load.failures == []
    assert load.outcomes["login"] >= 8


class TestAGatewayStartedRightAfterARotation:
    """A gateway started in the first interval after a rotation signs with the previous key
    until the not-before the rotation wrote, so no running gateway refuses its tokens."""

    # Long enough for a gateway to start well before the not-before (interval + 2 s), even
    # on a loaded host (15 s was too short once, at a load average of 10 on 2 cores).
    @pytest.fixture
    def ttl(self) -> str:
        return "30"

    def test_signs_with_the_previous_keys_until_every_gateway_knows_the_new_ones(
        self, stack: Stack
    ):
        before = stack.read_secrets()
        old_kid = key_id(load_private_key(before["GATEWAY_JWT_PRIVATE_KEY"]))
        old_assertion_kid = key_id(load_private_key(before["GATEWAY_ASSERTION_PRIVATE_KEY"]))
        stack.rotate("rotate-signing-key")
        stack.rotate("rotate-assertion-key")
        after = stack.read_secrets()
        new_kid = key_id(load_private_key(after["GATEWAY_JWT_PRIVATE_KEY"]))
        not_before = int(after["GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE"].split()[0])
        assert int(after["GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE"].split()[0]) >= not_before
        assert (
            after["GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY"]
            == before["GATEWAY_ASSERTION_PRIVATE_KEY"]
        )

        late = stack.start_gateway("c")
        assert time.time() < not_before - 1, "the gateway took too long to start"
        # Before the not-before: the previous key signs, and A and B (which may not have
        # read the new key yet) accept the token; the stub accepts C's assertion.
        token = login(late.url)
        assert kid_of(token) == old_kid
        for gateway in stack.gateways:
            response = httpx.get(
                gateway.url + "/api/trading/orders", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text
        assert jwks_kids(late.url) >= {old_kid, new_kid}
        assert time.time() < not_before, "the check ran past the not-before"

        # From the not-before on, C signs with the new key like A and B, and its tokens and
        # assertions are accepted everywhere.
        time.sleep(max(0.0, not_before - time.time()) + 0.5)
        for gateway in [*stack.gateways, late]:
            fresh = login(gateway.url)
            assert kid_of(fresh) == new_kid
            for other in [*stack.gateways, late]:
                response = httpx.get(
                    other.url + "/api/trading/orders",
                    headers={"Authorization": f"Bearer {fresh}"},
                )
                assert response.status_code == 200, response.text
        assert old_assertion_kid != key_id(load_private_key(after["GATEWAY_ASSERTION_PRIVATE_KEY"]))
