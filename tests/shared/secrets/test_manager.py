"""Resolution order, start-up failures, the TTL cache and stale values, write-back naming."""

import asyncio
import logging

import pytest
from pydantic import SecretStr

from shared.secrets import (
    InvalidSecretError,
    ManagedSecret,
    MissingSecretError,
    SecretRegistry,
    SecretsManager,
    SecretsSettings,
    SecretsUnavailableError,
    api_key_secret_name,
    api_key_username,
)
from tests.support.holding_proxy import HoldingProxy
from tests.support.openbao import OpenBao

LONG = "s" * 40


def env_manager(environ: dict[str, str], registry: SecretRegistry | None = None) -> SecretsManager:
    return SecretsManager(
        settings=SecretsSettings(secrets_provider="env"),
        registry=registry or SecretRegistry.load(),
        environ=environ,
    )


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    with OpenBao(tmp_path_factory.mktemp("openbao")) as server:
        yield server


@pytest.fixture
def vault_path(vault, request):
    """A path of its own per test, and a token (`vault.test_token`) that may read it alone."""
    path = f"secret/{request.node.name.replace('[', '_').replace(']', '_')}"
    vault.test_policy = "read-" + path.partition("/")[2]
    grant_read(vault, path)
    vault.test_token = vault.token(policies=[vault.test_policy])
    return path


def grant_read(vault: OpenBao, path: str) -> None:
    mount, _, rest = path.partition("/")
    vault.policy(vault.test_policy, f'path "{mount}/data/{rest}" {{ capabilities = ["read"] }}')


def revoke_read(vault: OpenBao) -> None:
    # The token stays valid but may read nothing: the store is unavailable to it.
    vault.policy(vault.test_policy, 'path "nothing/*" { capabilities = ["deny"] }')


def vault_manager(
    vault: OpenBao,
    path: str,
    *,
    environ: dict[str, str] | None = None,
    ttl: float = 300.0,
    clock: Clock | None = None,
    timeout: float = 2.0,
    url: str | None = None,
    token: str | None = None,
) -> SecretsManager:
    settings = SecretsSettings(
        secrets_provider="vault",
        vault_addr=url or vault.url,
        vault_token=SecretStr(token or vault.root_token),
        vault_secret_path=path,
        vault_timeout=timeout,
        secrets_cache_ttl_seconds=ttl,
    )
    return SecretsManager(
        settings=settings,
        registry=SecretRegistry.load(),
        environ=environ if environ is not None else {},
        clock=clock or Clock(),
    )


# Resolution order.


async def test_primary_name_beats_every_alias():
    manager = env_manager(
        {
            "SESSION_SECRET_KEY": "p" * 40,
            "FLASK_SECRET_KEY": "a" * 40,
            "FRONTEND_SESSION_SECRET": "b" * 40,
        }
    )
    resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    assert resolved.value.get_secret_value() == "p" * 40
    assert resolved.source == "environment"


async def test_aliases_are_tried_in_declared_order():
    manager = env_manager({"FRONTEND_SESSION_SECRET": "b" * 40, "FLASK_SECRET_KEY": "a" * 40})
    resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    assert resolved.value.get_secret_value() == "a" * 40
    assert resolved.source == "environment (alias FLASK_SECRET_KEY)"


async def test_last_alias_is_used_when_it_is_the_only_one_set():
    manager = env_manager({"FRONTEND_SESSION_SECRET": "b" * 40})
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "b" * 40


async def test_rotation_key_is_found_under_its_legacy_alias():
    manager = env_manager({"PORTFOLIO_ROTATION_API_KEY": "k" * 64})
    assert (await manager.require("PORTFOLIO_NEW_API_KEY")).get_secret_value() == "k" * 64


async def test_empty_value_counts_as_unset():
    manager = env_manager({"SESSION_SECRET_KEY": "", "FLASK_SECRET_KEY": "a" * 40})
    resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    assert resolved.key == "FLASK_SECRET_KEY"


async def test_names_outside_the_registry_are_looked_up_without_aliases():
    manager = env_manager({"SOME_OTHER_SECRET": "x", "FLASK_SECRET_KEY": "a" * 40})
    assert (await manager.get("SOME_OTHER_SECRET")) == SecretStr("x")
    assert await manager.get("NOT_SET_ANYWHERE") is None
    # An alias asked for by its own name is just a name: it does not pull in the entry.
    assert (await manager.get("FLASK_SECRET_KEY")) == SecretStr("a" * 40)


async def test_store_value_beats_the_environment(vault, vault_path):
    vault.put(vault_path, {"FLASK_SECRET_KEY": "v" * 40})
    manager = vault_manager(vault, vault_path, environ={"SESSION_SECRET_KEY": "e" * 40})
    resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    # Even an alias in the store wins over the primary name in the environment.
    assert resolved.value.get_secret_value() == "v" * 40
    assert resolved.source == f"vault:{vault_path} (alias FLASK_SECRET_KEY)"


async def test_environment_is_consulted_when_the_store_lacks_the_name(vault, vault_path):
    vault.put(vault_path, {"UNRELATED": "x"})
    manager = vault_manager(vault, vault_path, environ={"FRONTEND_SESSION_SECRET": "e" * 40})
    resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    assert resolved.source == "environment (alias FRONTEND_SESSION_SECRET)"


# Start-up failures.


async def test_missing_required_secret_is_one_line_naming_secret_aliases_and_provider():
    manager = env_manager({})
    with pytest.raises(MissingSecretError) as caught:
        await manager.require_for_service("frontend")
    assert str(caught.value) == (
        "missing secret SESSION_SECRET_KEY (aliases: FLASK_SECRET_KEY, FRONTEND_SESSION_SECRET): "
        "not found in the environment (SECRETS_PROVIDER=env)"
    )
    assert "\n" not in str(caught.value)


async def test_missing_secret_message_names_the_store_consulted(vault, vault_path):
    vault.put(vault_path, {"UNRELATED": "x"})
    manager = vault_manager(vault, vault_path)
    with pytest.raises(MissingSecretError) as caught:
        await manager.require("GATEWAY_ASSERTION_PUBLIC_KEY")
    assert str(caught.value) == (
        "missing secret GATEWAY_ASSERTION_PUBLIC_KEY (no aliases): not found in "
        f"vault:{vault_path} or the environment (SECRETS_PROVIDER=vault)"
    )


async def test_require_for_service_returns_every_required_secret_by_primary_name():
    manager = env_manager(
        {
            "GATEWAY_JWT_SIGNING_KEY": "jwt-key",
            "GATEWAY_ASSERTION_PRIVATE_KEY": "assertion-key",
            "PORTFOLIO_INTERNAL_TOKEN": "t" * 32,
        }
    )
    secrets = await manager.require_for_service("gateway")
    assert set(secrets) == {
        "GATEWAY_JWT_PRIVATE_KEY",
        "GATEWAY_ASSERTION_PRIVATE_KEY",
        "IDENTITY_SERVICE_TOKEN",
    }
    assert secrets["GATEWAY_JWT_PRIVATE_KEY"].get_secret_value() == "jwt-key"


async def test_too_short_value_is_refused_without_showing_it():
    manager = env_manager({"FLASK_SECRET_KEY": "short-but-secret"})
    with pytest.raises(InvalidSecretError) as caught:
        await manager.require("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        "secret SESSION_SECRET_KEY from environment (alias FLASK_SECRET_KEY) is shorter than "
        "the 32 characters required"
    )
    assert "short-but-secret" not in str(caught.value)


def test_sync_twins_work_without_a_running_loop():
    manager = env_manager({"SESSION_SECRET_KEY": LONG})
    assert manager.require_sync("SESSION_SECRET_KEY").get_secret_value() == LONG
    assert manager.get_sync("NOT_SET") is None
    with pytest.raises(MissingSecretError):
        manager.require_sync("IDENTITY_SERVICE_TOKEN")
    assert manager.write_api_key_sync("alice", "k" * 40) is None


async def test_sync_twins_also_work_inside_a_running_loop(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    manager = vault_manager(vault, vault_path)
    assert manager.require_sync("SESSION_SECRET_KEY").get_secret_value() == LONG


async def test_values_never_show_in_reprs():
    manager = env_manager({"SESSION_SECRET_KEY": LONG})
    resolved = await manager.resolve("SESSION_SECRET_KEY")
    secrets = await manager.require_for_service("frontend")
    for shown in (repr(resolved), str(resolved), repr(secrets), str(secrets)):
        assert LONG not in shown
        assert "**********" in shown


# Cache.


async def test_cached_value_is_served_until_the_ttl_expires(vault, vault_path):
    clock = Clock()
    vault.put(vault_path, {"SESSION_SECRET_KEY": "1" * 40})
    manager = vault_manager(vault, vault_path, ttl=60, clock=clock)
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "1" * 40

    vault.put(vault_path, {"SESSION_SECRET_KEY": "2" * 40})
    clock.now += 59
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "1" * 40

    clock.now += 1
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "2" * 40


async def test_concurrent_lookups_share_one_read_of_the_store(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG, "IDENTITY_SERVICE_TOKEN": "t" * 32})
    manager = vault_manager(vault, vault_path)
    store = manager._store
    reads = []
    real_read = store.read

    async def counted_read():
        reads.append(1)
        return await real_read()

    store.read = counted_read
    values = await asyncio.gather(
        *(manager.require(name) for name in ["SESSION_SECRET_KEY", "IDENTITY_SERVICE_TOKEN"] * 5)
    )
    assert [value.get_secret_value() for value in values[:2]] == [LONG, "t" * 32]
    assert len(reads) == 1


async def test_a_ttl_of_zero_reads_the_store_every_time(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": "1" * 40})
    manager = vault_manager(vault, vault_path, ttl=0)
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "1" * 40
    vault.put(vault_path, {"SESSION_SECRET_KEY": "2" * 40})
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "2" * 40


async def test_store_down_serves_the_stale_value_and_warns_without_it(vault, vault_path, caplog):
    clock = Clock()
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    manager = vault_manager(vault, vault_path, ttl=10, clock=clock, token=vault.test_token)
    await manager.require("SESSION_SECRET_KEY")

    vault.root.auth.token.revoke(vault.test_token)
    clock.now += 11
    with caplog.at_level(logging.WARNING, logger="shared.secrets"):
        value = await manager.require("SESSION_SECRET_KEY")
    assert value.get_secret_value() == LONG
    assert "serving the value cached earlier" in caplog.text
    assert "rejected VAULT_TOKEN" in caplog.text
    assert LONG not in caplog.text
    assert vault.test_token not in caplog.text


async def test_store_down_with_nothing_cached_is_a_clear_error(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    with HoldingProxy(vault.port) as proxy:
        hold = proxy.hold(b"GET /v1/secret/data/")
        manager = vault_manager(
            vault, vault_path, environ={"SESSION_SECRET_KEY": LONG}, timeout=0.3, url=proxy.url
        )
        # The environment is not a silent fall-back for a store that does not answer.
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.require("SESSION_SECRET_KEY")
        hold.release()
    assert str(caught.value) == f"Vault at {proxy.url} did not answer within VAULT_TIMEOUT=0.3 s"


async def test_rotated_value_is_picked_up_after_the_store_recovers(vault, vault_path):
    clock = Clock()
    vault.put(vault_path, {"SESSION_SECRET_KEY": "1" * 40})
    manager = vault_manager(vault, vault_path, ttl=5, clock=clock, token=vault.test_token)
    await manager.require("SESSION_SECRET_KEY")
    revoke_read(vault)
    clock.now += 6
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "1" * 40
    grant_read(vault, vault_path)
    vault.put(vault_path, {"SESSION_SECRET_KEY": "2" * 40})
    clock.now += 6
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == "2" * 40


# Write-back.


@pytest.mark.parametrize(
    ("username", "name"),
    [
        ("security-admin", "PORTFOLIO_API_KEY__SECURITY_2DADMIN"),
        ("alice", "PORTFOLIO_API_KEY__ALICE"),
        ("bob.smith@example", "PORTFOLIO_API_KEY__BOB_2ESMITH_40EXAMPLE"),
        ("a.b", "PORTFOLIO_API_KEY__A_2EB"),
        ("a_b", "PORTFOLIO_API_KEY__A_5FB"),
        ("a-b", "PORTFOLIO_API_KEY__A_2DB"),
        ("a@b", "PORTFOLIO_API_KEY__A_40B"),
        ("Ab", "PORTFOLIO_API_KEY___41B"),
        ("zoë", "PORTFOLIO_API_KEY__ZO_EB"),
        ("名", "PORTFOLIO_API_KEY___U00540D"),
    ],
)
def test_api_key_entry_name_is_reversible(username, name):
    assert api_key_secret_name(username) == name
    assert api_key_username(name) == username


@pytest.mark.parametrize(
    "name",
    [
        "PORTFOLIO_API_KEY__A_B",  # the old, lossy form
        "PORTFOLIO_API_KEY___61",  # `a` spelled as an escape: not the form we write
        "PORTFOLIO_API_KEY__",
        "PORTFOLIO_API_KEY__A_2",
        "PORTFOLIO_API_KEY__a",
        "SESSION_SECRET_KEY",
    ],
)
def test_names_we_never_write_have_no_username(name):
    assert api_key_username(name) is None


async def test_env_provider_writes_nothing_back():
    environ: dict[str, str] = {}
    manager = env_manager(environ)
    assert await manager.write_api_key("alice", SecretStr("k" * 40)) is None
    assert environ == {}


async def test_written_api_key_is_readable_at_once_despite_the_cache(vault, vault_path):
    vault.put(vault_path, {"OTHER": "x"})
    manager = vault_manager(vault, vault_path, ttl=300)
    name = api_key_secret_name("alice")
    assert await manager.get(name) is None
    await manager.write_api_key("alice", "1" * 40)
    assert (await manager.get(name)) == SecretStr("1" * 40)


async def test_custom_registry_entry_min_length_applies_to_store_values(vault, vault_path):
    vault.put(vault_path, {"CUSTOM": "abc"})
    registry = SecretRegistry([ManagedSecret(name="CUSTOM", description="x", min_length=4)])
    manager = SecretsManager(
        settings=SecretsSettings(
            secrets_provider="vault",
            vault_addr=vault.url,
            vault_token=SecretStr(vault.root_token),
            vault_secret_path=vault_path,
        ),
        registry=registry,
        environ={},
    )
    with pytest.raises(InvalidSecretError, match=f"CUSTOM from vault:{vault_path} is shorter"):
        await manager.require("CUSTOM")
