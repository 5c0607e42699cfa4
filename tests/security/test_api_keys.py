"""API keys: lookup cost independent of the number of users, one key never held by two
users, a deactivated holder's key indistinguishable from an unknown one, and the next key
read from the secrets store afresh at every rotation."""

import asyncio
import secrets
import threading

import asyncpg
import httpx
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from devstack.databases import postgres_database
from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import ApiKeyInUseError, InvalidCredentialsError
from services.portfolio.identity import PortfolioIdentityService
from shared.secrets import SecretsManager
from shared.secrets.config import SecretsSettings
from tests.security.conftest import PASSWORD
from tests.security.test_enumeration import Argon2Work
from tests.support.openbao import OpenBao

FAST = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}
BULK_USERS = 5000


class Statements:
    """Record every SQL statement any engine of this process sends."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []
        self._lock = threading.Lock()

    def __call__(self, conn, cursor, statement, parameters, context, executemany) -> None:
        with self._lock:
            self.seen.append((statement, parameters))

    def during(self, action) -> list[tuple[str, object]]:
        start = len(self.seen)
        action()
        return self.seen[start:]


@pytest.fixture
def statements():
    recorder = Statements()
    event.listen(Engine, "before_cursor_execute", recorder)
    yield recorder
    event.remove(Engine, "before_cursor_execute", recorder)


def test_verifying_a_key_costs_the_same_with_more_users_and_hashes_no_password(
    stack, statements, monkeypatch
):
    _, key = stack.user("trading", api_key=True)
    # A key's first use is stamped and audited once; every later check is what is measured.
    stack.identity.verify_api_key(key)
    before = statements.during(lambda: stack.identity.verify_api_key(key))
    for _ in range(10):
        stack.user("trading", api_key=True)
    work = Argon2Work(monkeypatch)
    after = statements.during(lambda: stack.identity.verify_api_key(key))
    assert len(after) == len(before) == 1
    assert work.count == 0, "a key lookup must never verify password hashes"


def test_the_key_lookup_uses_the_index_on_a_large_table(statements):
    async def plan(database_url: str, statement: str, parameters: tuple) -> str:
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(
                f"""
                INSERT INTO user_accounts (username, password_hash, roles, is_active,
                    must_change_password, created_at, updated_at, password_changed_at,
                    api_key_hash, api_key_id, failed_login_count)
                SELECT 'bulk-' || g, 'x', '["trading"]', true, false, now(), now(), now(),
                    md5(g::text) || md5((g + 1)::text), left(md5(g::text), 16), 0
                FROM generate_series(1, {BULK_USERS}) AS g
                """
            )
            await conn.execute("ANALYZE user_accounts")
            rows = await conn.fetch("EXPLAIN " + statement, *parameters)
            return "\n".join(row[0] for row in rows)
        finally:
            await conn.close()

    with postgres_database() as database_url:
        identity = PortfolioIdentityService(
            settings=PortfolioSettings(database_url=database_url, **FAST)
        )
        try:
            identity.create_user("holder", PASSWORD, roles=["trading"])
            key = identity.rotate_api_key("holder", secrets.token_hex(32)).api_key
            identity.verify_api_key(key)  # the first use is stamped once; then one query
            [(statement, parameters)] = statements.during(lambda: identity.verify_api_key(key))
            query_plan = asyncio.run(plan(database_url, statement, tuple(parameters)))
        finally:
            identity.close()
    assert "ix_user_accounts_api_key_hash" in query_plan, query_plan
    assert "Seq Scan" not in query_plan, query_plan


def answer(response: httpx.Response) -> tuple[int, object, str | None]:
    return response.status_code, response.json(), response.headers.get("www-authenticate")


def test_a_deactivated_users_key_reads_exactly_like_an_unknown_key(stack, statements, monkeypatch):
    name, key = stack.user("trading", api_key=True)
    assert key is not None
    stack.identity.deactivate_user(name)  # before the gateway ever saw (and cached) the key
    unknown = secrets.token_hex(32)
    with httpx.Client(base_url=stack.gateway_url) as client:
        gateway = {
            k: answer(client.get("/api/trading/orders", headers={"X-API-Key": k}))
            for k in (key, unknown)
        }
    assert gateway[key][0] == 401
    assert gateway[key] == gateway[unknown]
    token = {"X-Service-Token": stack.env["IDENTITY_SERVICE_TOKEN"]}
    with httpx.Client(base_url=stack.portfolio_url, headers=token) as client:
        identity = {
            k: answer(client.post("/internal/identity/api-keys/verify", json={"api_key": k}))
            for k in (key, unknown)
        }
    assert identity[key][0] == 401
    assert identity[key] == identity[unknown]
    # The same work either way (counted, not timed): one indexed lookup, no hashing.
    work = Argon2Work(monkeypatch)

    def refused(api_key: str) -> None:
        with pytest.raises(InvalidCredentialsError) as caught:
            stack.identity.verify_api_key(api_key)
        assert str(caught.value) == "invalid API key"

    shapes = {
        k: [statement for statement, _ in statements.during(lambda k=k: refused(k))]
        for k in (key, unknown)
    }
    assert len(shapes[key]) == 1
    assert shapes[key] == shapes[unknown]
    assert work.count == 0


def test_one_key_is_never_given_to_a_second_user(stack):
    first, _ = stack.user("trading")
    second, _ = stack.user("trading")
    shared_key = secrets.token_hex(32)
    stack.identity.rotate_api_key(first, shared_key)
    with pytest.raises(ApiKeyInUseError):
        stack.identity.rotate_api_key(second, shared_key)
    assert stack.identity.verify_api_key(shared_key).username == first


def test_a_rotation_key_left_in_the_environment_is_not_reused_for_another_user(stack, monkeypatch):
    # The operations guide exports PORTFOLIO_NEW_API_KEY, then rotates; an operator who
    # forgets to change it before the next user must be stopped, not given a shared key.
    first, _ = stack.user("trading")
    second, _ = stack.user("trading")
    monkeypatch.setenv("PORTFOLIO_NEW_API_KEY", secrets.token_hex(32))
    monkeypatch.setenv("SECRETS_PROVIDER", "env")
    facade = PortfolioIdentityService(
        settings=PortfolioSettings(database_url=stack.database_url, **FAST)
    )
    try:
        assert facade.rotate_api_key(first).user.username == first
        with pytest.raises(ApiKeyInUseError):
            facade.rotate_api_key(second)
    finally:
        facade.close()


def test_the_next_key_is_read_from_the_store_afresh_at_every_rotation(stack, tmp_path):
    with OpenBao(tmp_path) as vault:
        vault.put("secret/legacycointrader", {"PORTFOLIO_NEW_API_KEY": "k" * 64})
        manager = SecretsManager(
            settings=SecretsSettings(
                secrets_provider="vault",
                vault_addr=vault.url,
                vault_token=vault.root_token,
                vault_secret_path="secret/legacycointrader",
            ),
            environ={},
        )
        # One long-lived manager, as the running service holds one: its cache must not
        # hand out the previous rotation's key.
        facade = PortfolioIdentityService(
            settings=PortfolioSettings(database_url=stack.database_url, **FAST),
            secrets_manager=manager,
        )
        try:
            first, _ = stack.user("trading")
            second, _ = stack.user("trading")
            assert facade.rotate_api_key(first).api_key == "k" * 64
            vault.put("secret/legacycointrader", {"PORTFOLIO_NEW_API_KEY": "n" * 64})
            assert facade.rotate_api_key(second).api_key == "n" * 64
        finally:
            facade.close()
