"""The Vault KV v2 store, through hvac, against the KV v2 test double over HTTP and HTTPS."""

import pytest
import trustme
from pydantic import SecretStr

from devstack.ports import free_port
from shared.secrets import (
    SecretRegistry,
    SecretsManager,
    SecretsSettings,
    SecretsUnavailableError,
)
from tests.support.vault_server import VaultTestDouble

TOKEN = "vault-token-for-store-tests"
LONG = "v" * 40


@pytest.fixture(scope="module")
def vault():
    with VaultTestDouble(token=TOKEN) as server:
        yield server


@pytest.fixture
def vault_path(vault, request):
    yield f"secret/{request.node.name.replace('[', '_').replace(']', '_')}"
    vault.delay = 0.0
    vault.forbidden_paths.clear()
    vault.before_write = None


def make(
    url: str,
    path: str,
    *,
    token: str = TOKEN,
    verify: str = "true",
    timeout: float = 2.0,
    provider: str = "vault",
) -> SecretsManager:
    settings = SecretsSettings(
        secrets_provider=provider,
        vault_addr=url,
        vault_token=SecretStr(token),
        vault_secret_path=path,
        vault_verify=verify,
        vault_timeout=timeout,
        secrets_cache_ttl_seconds=0,
    )
    return SecretsManager(settings=settings, registry=SecretRegistry.load(), environ={})


async def test_reads_the_latest_version(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": "1" * 40})
    vault.put(vault_path, {"SESSION_SECRET_KEY": "2" * 40})
    async with make(vault.url, vault_path, provider="hashicorp") as manager:
        assert manager.provider_name == "vault"
        assert manager.store_location == f"vault:{vault_path}"
        resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    assert resolved.value.get_secret_value() == "2" * 40
    assert resolved.source == f"vault:{vault_path}"


async def test_wrong_token_is_a_clear_error_without_the_token(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    wrong = "hvs.wrong-token-value"
    async with make(vault.url, vault_path, token=wrong) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"Vault at {vault.url} rejected VAULT_TOKEN (permission denied)"
    assert wrong not in str(caught.value)
    assert ("GET", "/v1/auth/token/lookup-self") in vault.requests


async def test_token_without_read_permission_on_the_path_is_told_apart(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    vault.forbidden_paths.add(vault_path)
    async with make(vault.url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"VAULT_TOKEN may not read vault:{vault_path} at {vault.url} (permission denied)"
    )


async def test_missing_path_is_a_clear_error(vault, vault_path):
    async with make(vault.url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"Vault at {vault.url} has no secret at {vault_path} (404); VAULT_SECRET_PATH must name "
        "an existing <mount>/<path> on a KV v2 mount"
    )


async def test_server_slower_than_vault_timeout_is_a_clear_error(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    vault.delay = 1.0
    async with make(vault.url, vault_path, timeout=0.25) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"Vault at {vault.url} did not answer within VAULT_TIMEOUT=0.25 s"


async def test_nothing_listening_is_a_clear_error(vault_path):
    url = f"http://127.0.0.1:{free_port()}"
    async with make(url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError, match=rf"^cannot reach Vault at {url} "):
            await manager.get("SESSION_SECRET_KEY")


async def test_write_back_adds_a_version_and_keeps_every_other_key(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG, "IDENTITY_SERVICE_TOKEN": "t" * 32})
    async with make(vault.url, vault_path) as manager:
        where = await manager.write_api_key("security-admin", SecretStr("k" * 64))
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__SECURITY_ADMIN (version 2)"
    assert vault.version(vault_path) == 2
    assert vault.read(vault_path) == {
        "SESSION_SECRET_KEY": LONG,
        "IDENTITY_SERVICE_TOKEN": "t" * 32,
        "PORTFOLIO_API_KEY__SECURITY_ADMIN": "k" * 64,
    }
    assert "k" * 64 not in where


async def test_write_back_creates_the_path_when_absent(vault, vault_path):
    async with make(vault.url, vault_path) as manager:
        where = await manager.write_api_key("alice", "k" * 40)
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__ALICE (version 1)"
    assert vault.read(vault_path) == {"PORTFOLIO_API_KEY__ALICE": "k" * 40}


async def test_write_back_never_loses_a_key_written_concurrently(vault, vault_path):
    vault.put(vault_path, {"SESSION_SECRET_KEY": LONG})

    def other_writer(mount, path):
        current = vault.read(f"{mount}/{path}") or {}
        vault.put(f"{mount}/{path}", {**current, "WRITTEN_MEANWHILE": "yes"})

    vault.before_write = other_writer
    async with make(vault.url, vault_path) as manager:
        where = await manager.write_api_key("bob", "k" * 40)
    # Our first check-and-set failed on version 2; the retry wrote version 3 on top of it.
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__BOB (version 3)"
    assert vault.read(vault_path) == {
        "SESSION_SECRET_KEY": LONG,
        "WRITTEN_MEANWHILE": "yes",
        "PORTFOLIO_API_KEY__BOB": "k" * 40,
    }


async def test_write_back_over_a_deleted_latest_version(vault, vault_path):
    vault.put(vault_path, {"OLD": "x"})
    vault.delete_latest(vault_path)
    async with make(vault.url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError, match="has no secret at"):
            await manager.get("OLD")
        where = await manager.write_api_key("alice", "k" * 40)
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__ALICE (version 2)"
    assert vault.read(vault_path) == {"PORTFOLIO_API_KEY__ALICE": "k" * 40}


async def test_write_to_an_unknown_mount_is_a_clear_error(vault):
    async with make(vault.url, "kv/legacycointrader") as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.write_api_key("alice", "k" * 40)
    assert str(caught.value) == (
        f"Vault at {vault.url} has no KV v2 mount for vault:kv/legacycointrader (404)"
    )


async def test_write_with_a_wrong_token_is_a_clear_error(vault, vault_path):
    async with make(vault.url, vault_path, token="nope") as manager:
        with pytest.raises(SecretsUnavailableError, match="rejected VAULT_TOKEN"):
            await manager.write_api_key("alice", "k" * 40)


# TLS.


@pytest.fixture(scope="module")
def tls_ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_vault(tls_ca, tmp_path_factory):
    with VaultTestDouble(
        token=TOKEN, tls=tls_ca, workdir=tmp_path_factory.mktemp("vault-tls")
    ) as server:
        server.put("secret/legacycointrader", {"SESSION_SECRET_KEY": LONG})
        yield server


async def test_tls_with_the_ca_bundle_in_vault_verify(tls_vault, tls_ca, tmp_path):
    bundle = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(bundle))
    async with make(tls_vault.url, "secret/legacycointrader", verify=str(bundle)) as manager:
        assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG


async def test_tls_with_an_unknown_ca_fails_verification(tls_vault, tmp_path):
    bundle = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    async with make(tls_vault.url, "secret/legacycointrader", verify=str(bundle)) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"TLS verification of Vault at {tls_vault.url} failed (VAULT_VERIFY={bundle}); "
        "check the CA bundle"
    )


async def test_tls_with_the_system_trust_store_refuses_a_private_ca(tls_vault):
    async with make(tls_vault.url, "secret/legacycointrader", verify="true") as manager:
        with pytest.raises(SecretsUnavailableError, match="TLS verification of Vault"):
            await manager.get("SESSION_SECRET_KEY")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_vault_verify_false_skips_verification(tls_vault):
    async with make(tls_vault.url, "secret/legacycointrader", verify="false") as manager:
        assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG
