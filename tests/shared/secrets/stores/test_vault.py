"""The Vault KV v2 store, through hvac, against a real OpenBao server over HTTP and HTTPS.

The one thing the real server cannot be made to do, answer slowly, is done by a real TCP
proxy in front of it that holds the answer back (tests/support/holding_proxy.py).
"""

import asyncio
import time

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
from tests.support.holding_proxy import HoldingProxy
from tests.support.openbao import ROOT_TOKEN, OpenBao

LONG = "v" * 40


@pytest.fixture(scope="module")
def bao(tmp_path_factory):
    with OpenBao(tmp_path_factory.mktemp("openbao")) as server:
        yield server


@pytest.fixture
def vault_path(request):
    return f"secret/{request.node.name.replace('[', '_').replace(']', '_')}"


def make(
    url: str,
    path: str,
    *,
    token: str = ROOT_TOKEN,
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


def reader_token(bao: OpenBao, path: str, **options) -> str:
    mount, _, rest = path.partition("/")
    name = "read-" + rest.replace("/", "-")
    bao.policy(name, f'path "{mount}/data/{rest}" {{ capabilities = ["read"] }}')
    return bao.token(policies=[name], **options)


async def test_reads_the_latest_version(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": "1" * 40})
    bao.put(vault_path, {"SESSION_SECRET_KEY": "2" * 40})
    async with make(bao.url, vault_path, provider="hashicorp") as manager:
        assert manager.provider_name == "vault"
        assert manager.store_location == f"vault:{vault_path}"
        resolved = await manager.resolve("SESSION_SECRET_KEY")
    assert resolved is not None
    assert resolved.value.get_secret_value() == "2" * 40
    assert resolved.source == f"vault:{vault_path}"


async def test_wrong_token_is_a_clear_error_without_the_token(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    wrong = "s.wrong-token-value"
    async with make(bao.url, vault_path, token=wrong) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"Vault at {bao.url} rejected VAULT_TOKEN (permission denied)"
    assert wrong not in str(caught.value)


async def test_token_without_read_permission_on_the_path_is_told_apart(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    other = reader_token(bao, vault_path + "-other")
    async with make(bao.url, vault_path, token=other) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"VAULT_TOKEN may not read vault:{vault_path} at {bao.url} (permission denied)"
    )


async def test_missing_path_is_a_clear_error(bao, vault_path):
    async with make(bao.url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"Vault at {bao.url} has no secret at {vault_path} (404); VAULT_SECRET_PATH must name "
        "an existing <mount>/<path> on a KV v2 mount"
    )


async def test_server_slower_than_vault_timeout_is_a_clear_error(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    with HoldingProxy(bao.port) as proxy:
        hold = proxy.hold(b"GET /v1/secret/data/" + vault_path.partition("/")[2].encode())
        async with make(proxy.url, vault_path, timeout=0.25) as manager:
            started = time.monotonic()
            with pytest.raises(SecretsUnavailableError) as caught:
                await manager.get("SESSION_SECRET_KEY")
            waited = time.monotonic() - started
        hold.release()
    assert str(caught.value) == f"Vault at {proxy.url} did not answer within VAULT_TIMEOUT=0.25 s"
    assert waited < 2.0


async def test_nothing_listening_is_a_clear_error(vault_path):
    url = f"http://127.0.0.1:{free_port()}"
    async with make(url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError, match=rf"^cannot reach Vault at {url} "):
            await manager.get("SESSION_SECRET_KEY")


async def test_a_server_that_goes_down_keeps_the_cached_value(tmp_path, vault_path):
    with OpenBao(tmp_path) as server:
        server.put(vault_path, {"SESSION_SECRET_KEY": LONG})
        manager = make(server.url, vault_path, timeout=1.0)
        assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG
    # Stopped: the value read before is served, a name never read is unavailable.
    assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG
    with pytest.raises(SecretsUnavailableError, match=r"^cannot reach Vault at "):
        await manager.get("IDENTITY_SERVICE_TOKEN")
    await manager.aclose()


# Token lifetime.


async def test_a_renewable_token_is_renewed_before_it_expires(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    token = reader_token(bao, vault_path, ttl="3s", explicit_max_ttl="1m")
    async with make(bao.url, vault_path, token=token) as manager:
        store = manager._store
        assert await manager.get("SESSION_SECRET_KEY") == SecretStr(LONG)
        await asyncio.sleep(2.2)  # past two thirds of its 3 s
        assert await manager.get("SESSION_SECRET_KEY") == SecretStr(LONG)
        assert store.auth.renewals == 1
        await asyncio.sleep(1.5)  # past the 3 s it was first issued for
        assert await manager.get("SESSION_SECRET_KEY") == SecretStr(LONG)


async def test_an_expired_token_is_a_clear_error(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    token = reader_token(bao, vault_path, ttl="1s", renewable=False)
    async with make(bao.url, vault_path, token=token) as manager:
        await asyncio.sleep(1.5)
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == f"Vault at {bao.url} rejected VAULT_TOKEN (permission denied)"


# Write-back.


async def test_write_back_adds_a_version_and_keeps_every_other_key(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG, "IDENTITY_SERVICE_TOKEN": "t" * 32})
    async with make(bao.url, vault_path) as manager:
        where = await manager.write_api_key("security-admin", SecretStr("k" * 64))
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__SECURITY_2DADMIN (version 2)"
    assert bao.version(vault_path) == 2
    assert bao.read(vault_path) == {
        "SESSION_SECRET_KEY": LONG,
        "IDENTITY_SERVICE_TOKEN": "t" * 32,
        "PORTFOLIO_API_KEY__SECURITY_2DADMIN": "k" * 64,
    }
    assert "k" * 64 not in where


async def test_write_back_creates_the_path_when_absent(bao, vault_path):
    async with make(bao.url, vault_path) as manager:
        where = await manager.write_api_key("alice", "k" * 40)
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__ALICE (version 1)"
    assert bao.read(vault_path) == {"PORTFOLIO_API_KEY__ALICE": "k" * 40}


async def test_usernames_that_differ_only_in_punctuation_keep_their_own_keys(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    async with make(bao.url, vault_path) as manager:
        for index, username in enumerate(["a.b", "a_b", "a-b", "a@b"]):
            await manager.write_api_key(username, str(index) * 40)
        read_back = {
            username: await manager.get(name)
            for username, name in [
                ("a.b", "PORTFOLIO_API_KEY__A_2EB"),
                ("a_b", "PORTFOLIO_API_KEY__A_5FB"),
                ("a-b", "PORTFOLIO_API_KEY__A_2DB"),
                ("a@b", "PORTFOLIO_API_KEY__A_40B"),
            ]
        }
    assert read_back == {
        "a.b": SecretStr("0" * 40),
        "a_b": SecretStr("1" * 40),
        "a-b": SecretStr("2" * 40),
        "a@b": SecretStr("3" * 40),
    }


async def test_concurrent_write_backs_lose_no_key(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    managers = [make(bao.url, vault_path) for _ in range(8)]
    try:
        # Eight managers (as eight processes would) write at once: every check-and-set
        # that lost the race reads again and merges on top of the winner.
        results = await asyncio.gather(
            *(
                manager.write_api_key(f"user{index}", str(index) * 40)
                for index, manager in enumerate(managers)
            )
        )
    finally:
        for manager in managers:
            await manager.aclose()
    assert len(results) == 8
    assert bao.read(vault_path) == {
        "SESSION_SECRET_KEY": LONG,
        **{f"PORTFOLIO_API_KEY__USER{index}": str(index) * 40 for index in range(8)},
    }
    assert bao.version(vault_path) == 9


async def test_write_back_after_a_soft_delete_merges_the_last_live_version(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG, "IDENTITY_SERVICE_TOKEN": "t" * 32})
    bao.delete_latest(vault_path)
    async with make(bao.url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError, match=r"^Vault at .* has no secret at"):
            await manager.get("SESSION_SECRET_KEY")
        where = await manager.write_api_key("alice", "k" * 40)
    assert where == f"vault:{vault_path} key PORTFOLIO_API_KEY__ALICE (version 3)"
    assert bao.read(vault_path) == {
        "SESSION_SECRET_KEY": LONG,
        "PORTFOLIO_API_KEY__ALICE": "k" * 40,
    }


async def test_write_back_when_every_version_is_deleted_is_refused(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    bao.delete_latest(vault_path)
    async with make(bao.url, vault_path) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.write_api_key("alice", "k" * 40)
    assert str(caught.value) == (
        f"Vault at {bao.url}: every version of {vault_path} is deleted or destroyed; refusing "
        "to write a version that would hold one key only (restore one with "
        f"`bao kv undelete -versions=N {vault_path}`)"
    )
    assert bao.version(vault_path) == 1


async def test_write_to_an_unknown_mount_is_a_clear_error(bao):
    async with make(bao.url, "kv/legacycointrader") as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.write_api_key("alice", "k" * 40)
    assert str(caught.value) == (
        f"Vault at {bao.url} has no KV v2 mount for vault:kv/legacycointrader (404)"
    )


async def test_write_with_a_read_only_token_is_refused(bao, vault_path):
    bao.put(vault_path, {"SESSION_SECRET_KEY": LONG})
    token = reader_token(bao, vault_path)
    async with make(bao.url, vault_path, token=token) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.write_api_key("alice", "k" * 40)
    assert str(caught.value) == (
        f"VAULT_TOKEN may not write vault:{vault_path} at {bao.url} (permission denied)"
    )
    assert bao.version(vault_path) == 1


# TLS.


@pytest.fixture(scope="module")
def tls_ca():
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_bao(tls_ca, tmp_path_factory):
    with OpenBao(tmp_path_factory.mktemp("openbao-tls"), tls=tls_ca) as server:
        server.put("secret/legacycointrader", {"SESSION_SECRET_KEY": LONG})
        yield server


async def test_tls_with_the_ca_bundle_in_vault_verify(tls_bao, tls_ca, tmp_path):
    bundle = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(bundle))
    async with make(tls_bao.tls_url, "secret/legacycointrader", verify=str(bundle)) as manager:
        assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG


async def test_tls_with_an_unknown_ca_fails_verification(tls_bao, tmp_path):
    bundle = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    async with make(tls_bao.tls_url, "secret/legacycointrader", verify=str(bundle)) as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("SESSION_SECRET_KEY")
    assert str(caught.value) == (
        f"TLS verification of Vault at {tls_bao.tls_url} failed (VAULT_VERIFY={bundle}); "
        "check the CA bundle"
    )


async def test_tls_with_the_system_trust_store_refuses_a_private_ca(tls_bao):
    async with make(tls_bao.tls_url, "secret/legacycointrader", verify="true") as manager:
        with pytest.raises(SecretsUnavailableError, match="TLS verification of Vault"):
            await manager.get("SESSION_SECRET_KEY")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
async def test_vault_verify_false_skips_verification(tls_bao):
    async with make(tls_bao.tls_url, "secret/legacycointrader", verify="false") as manager:
        assert (await manager.require("SESSION_SECRET_KEY")).get_secret_value() == LONG
