"""Least privilege on a real OpenBao: provisioning, per-service paths, AppRole sign-in."""

import asyncio
import os
import stat
import subprocess
import sys

import hvac
import hvac.exceptions
import pytest
from pydantic import SecretStr

from devstack import REPO_ROOT
from shared.secrets import (
    SecretRegistry,
    SecretsConfigError,
    SecretsManager,
    SecretsSettings,
    SecretsUnavailableError,
)
from shared.secrets.provision import provision_vault
from tests.support.openbao import ROOT_TOKEN, OpenBao

BASE = "secret/legacycointrader"
SERVICES = ("portfolio", "gateway", "frontend", "stub")
# Where each required secret lives (written out here, not derived from the layout module).
HOMES = {
    "SESSION_SECRET_KEY": "frontend",
    "GATEWAY_JWT_PRIVATE_KEY": "gateway",
    "GATEWAY_ASSERTION_PRIVATE_KEY": "gateway",
    "GATEWAY_ASSERTION_PUBLIC_KEY": "shared",
    "IDENTITY_SERVICE_TOKEN": "portfolio-gateway",
}


def root_settings(bao: OpenBao) -> SecretsSettings:
    return SecretsSettings(
        secrets_provider="vault",
        vault_addr=bao.url,
        vault_token=SecretStr(ROOT_TOKEN),
        vault_secret_path=BASE,
        vault_secret_layout="per-service",
    )


def service_manager(
    bao: OpenBao,
    credentials,
    service: str,
    *,
    as_service: str | None = None,
    role_id_file: bool = False,
):
    """A manager signing in with `service`'s AppRole credentials, reading as `as_service`."""
    folder = credentials / service
    settings = SecretsSettings(
        secrets_provider="vault",
        vault_addr=bao.url,
        vault_role_id=None if role_id_file else (folder / "role_id").read_text().strip(),
        vault_role_id_file=folder / "role_id" if role_id_file else None,
        vault_secret_id_file=folder / "secret_id",
        vault_secret_path=BASE,
        vault_secret_layout="per-service",
        secrets_cache_ttl_seconds=0,
    )
    return SecretsManager(
        settings=settings,
        registry=SecretRegistry.load(),
        environ={},
        service=as_service or service,
    )


def approle_token(bao: OpenBao, credentials, service: str) -> str:
    folder = credentials / service
    client = hvac.Client(url=bao.url)
    login = client.auth.approle.login(
        role_id=(folder / "role_id").read_text().strip(),
        secret_id=(folder / "secret_id").read_text().strip(),
    )
    client.adapter.close()
    token: str = login["auth"]["client_token"]
    return token


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("openbao-provision")
    credentials = workdir / "credentials"
    with OpenBao(workdir) as bao:
        report = provision_vault(root_settings(bao), credentials)
        yield bao, credentials, report


def test_every_required_secret_is_written_to_its_own_path(provisioned):
    bao, _, report = provisioned
    for name, home in HOMES.items():
        stored = bao.read(f"{BASE}/{home}")
        assert stored is not None
        assert name in stored, name
    assert set(bao.read(f"{BASE}/gateway")) == {
        "GATEWAY_JWT_PRIVATE_KEY",
        "GATEWAY_ASSERTION_PRIVATE_KEY",
    }
    assert set(bao.read(f"{BASE}/shared")) == {"GATEWAY_ASSERTION_PUBLIC_KEY"}
    assert report.policies == [f"legacycointrader-{service}" for service in SERVICES]


def test_credentials_are_private_files(provisioned):
    _, credentials, _ = provisioned
    for service in SERVICES:
        folder = credentials / service
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        for name in ("role_id", "secret_id"):
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
            assert (folder / name).read_text().strip()


@pytest.mark.parametrize(
    ("service", "names"),
    [
        ("frontend", ["SESSION_SECRET_KEY"]),
        (
            "gateway",
            ["GATEWAY_JWT_PRIVATE_KEY", "GATEWAY_ASSERTION_PRIVATE_KEY", "IDENTITY_SERVICE_TOKEN"],
        ),
        ("portfolio", ["GATEWAY_ASSERTION_PUBLIC_KEY", "IDENTITY_SERVICE_TOKEN"]),
        ("stub", ["GATEWAY_ASSERTION_PUBLIC_KEY"]),
    ],
)
@pytest.mark.parametrize("role_id_file", [False, True])
async def test_each_service_resolves_what_it_requires_with_its_approle(
    provisioned, service, names, role_id_file
):
    bao, credentials, _ = provisioned
    async with service_manager(bao, credentials, service, role_id_file=role_id_file) as manager:
        resolved = await manager.require_for_service(service)
    assert sorted(resolved) == sorted(names)


async def test_an_unreadable_secret_id_file_is_a_clear_error(provisioned, tmp_path):
    bao, credentials, _ = provisioned
    manager = service_manager(bao, credentials, "stub")
    manager._store.auth._secret_id_file = tmp_path / "absent"
    with pytest.raises(SecretsConfigError) as caught:
        await manager.get("GATEWAY_ASSERTION_PUBLIC_KEY")
    await manager.aclose()
    assert str(caught.value) == (
        f"VAULT_SECRET_ID_FILE={tmp_path / 'absent'} cannot be read (No such file or directory)"
    )


async def test_a_wrong_secret_id_is_refused_at_login(provisioned, tmp_path):
    bao, credentials, _ = provisioned
    wrong = tmp_path / "secret_id"
    wrong.write_text("00000000-0000-0000-0000-000000000000\n")
    manager = service_manager(bao, credentials, "stub")
    manager._store.auth._secret_id_file = wrong
    with pytest.raises(SecretsUnavailableError) as caught:
        await manager.get("GATEWAY_ASSERTION_PUBLIC_KEY")
    await manager.aclose()
    assert str(caught.value) == (
        f"Vault at {bao.url} refused the AppRole login (check VAULT_ROLE_ID and the secret id)"
    )


async def test_the_frontend_is_refused_the_gateway_signing_key(provisioned):
    bao, credentials, _ = provisioned
    token = approle_token(bao, credentials, "frontend")
    client = hvac.Client(url=bao.url, token=token)
    try:
        assert client.secrets.kv.v2.read_secret_version(
            path="legacycointrader/frontend", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]["SESSION_SECRET_KEY"]
        with pytest.raises(hvac.exceptions.Forbidden):  # HTTP 403 from OpenBao
            client.secrets.kv.v2.read_secret_version(
                path="legacycointrader/gateway", mount_point="secret", raise_on_deleted_version=True
            )
    finally:
        client.adapter.close()
    # The same through the store: frontend credentials reading as the gateway would.
    async with service_manager(bao, credentials, "frontend", as_service="gateway") as manager:
        with pytest.raises(SecretsUnavailableError) as caught:
            await manager.get("GATEWAY_JWT_PRIVATE_KEY")
        logins = manager._store.auth.logins
    assert str(caught.value) == (
        "the AppRole login (VAULT_ROLE_ID) may not read vault:secret/legacycointrader/gateway "
        f"at {bao.url} (permission denied)"
    )
    assert logins == 1  # a denial is not mistaken for a dead token


async def test_a_stub_cannot_write(provisioned):
    bao, credentials, _ = provisioned
    before = {path: bao.version(f"{BASE}/{path}") for path in ("shared", "api-keys")}
    async with service_manager(bao, credentials, "stub") as manager:
        with pytest.raises(
            SecretsUnavailableError, match=r"may not read vault:secret/legacycointrader/api-keys"
        ):
            await manager.write_api_key("alice", "k" * 40)
    token = approle_token(bao, credentials, "stub")
    client = hvac.Client(url=bao.url, token=token)
    try:
        with pytest.raises(hvac.exceptions.Forbidden):
            client.secrets.kv.v2.create_or_update_secret(
                path="legacycointrader/shared", secret={"X": "y"}, mount_point="secret"
            )
    finally:
        client.adapter.close()
    assert {path: bao.version(f"{BASE}/{path}") for path in ("shared", "api-keys")} == before


async def test_the_portfolio_writes_back_an_api_key_and_nothing_else(provisioned):
    bao, credentials, _ = provisioned
    async with service_manager(bao, credentials, "portfolio") as manager:
        where = await manager.write_api_key("a.b", "k" * 40)
        assert where.startswith(
            "vault:secret/legacycointrader/api-keys key PORTFOLIO_API_KEY__A_2EB"
        )
        assert await manager.get("PORTFOLIO_API_KEY__A_2EB") == SecretStr("k" * 40)
        for name, path in [
            ("IDENTITY_SERVICE_TOKEN", "portfolio-gateway"),
            ("SESSION_SECRET_KEY", "frontend"),
        ]:
            before = bao.read(f"{BASE}/{path}")
            with pytest.raises(SecretsUnavailableError, match="permission denied"):
                await manager._store.write(name, "x" * 40)
            assert bao.read(f"{BASE}/{path}") == before
    assert bao.read(f"{BASE}/api-keys") == {"PORTFOLIO_API_KEY__A_2EB": "k" * 40}


async def test_a_revoked_approle_token_is_replaced_by_a_new_login(provisioned):
    bao, credentials, _ = provisioned
    async with service_manager(bao, credentials, "frontend") as manager:
        auth = manager._store.auth
        assert await manager.get("SESSION_SECRET_KEY") is not None
        bao.root.auth.token.revoke(manager._store._client.token)
        assert await manager.get("SESSION_SECRET_KEY") is not None
    assert auth.logins == 2


async def test_a_token_past_its_max_ttl_is_replaced_by_a_new_login(tmp_path):
    with OpenBao(tmp_path) as bao:
        credentials = tmp_path / "credentials"
        provision_vault(root_settings(bao), credentials, token_ttl="1s", token_max_ttl="1s")
        async with service_manager(bao, credentials, "stub") as manager:
            auth = manager._store.auth
            assert await manager.get("GATEWAY_ASSERTION_PUBLIC_KEY") is not None
            await asyncio.sleep(1.5)
            assert await manager.get("GATEWAY_ASSERTION_PUBLIC_KEY") is not None
        assert auth.logins == 2


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "SECRETS_"))}
    return subprocess.run(
        [sys.executable, "-m", "shared.secrets", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_provision_command_is_idempotent(tmp_path):
    with OpenBao(tmp_path) as bao:
        env = {
            "VAULT_ADDR": bao.url,
            "VAULT_TOKEN": ROOT_TOKEN,
            "VAULT_SECRET_PATH": BASE,
        }
        credentials = tmp_path / "credentials"
        first = run_cli(env, "provision", "--vault", "--credentials-dir", str(credentials))
        assert first.returncode == 0, first.stderr
        stored = {home: bao.read(f"{BASE}/{home}") for home in set(HOMES.values())}
        ids = {s: (credentials / s / "secret_id").read_text() for s in SERVICES}
        second = run_cli(env, "provision", "--vault", "--credentials-dir", str(credentials))
        assert second.returncode == 0, second.stderr
        assert "secrets: every required secret present, nothing written" in second.stdout
        assert {home: bao.read(f"{BASE}/{home}") for home in set(HOMES.values())} == stored
        assert {s: (credentials / s / "secret_id").read_text() for s in SERVICES} == ids
        for value in stored.values():
            for secret in (value or {}).values():
                assert secret not in first.stdout + second.stdout
        # check and get read as the service does, with that service's credentials.
        frontend = {
            "SECRETS_PROVIDER": "vault",
            "VAULT_ADDR": bao.url,
            "VAULT_SECRET_PATH": BASE,
            "VAULT_SECRET_LAYOUT": "per-service",
            "VAULT_ROLE_ID": (credentials / "frontend" / "role_id").read_text().strip(),
            "VAULT_SECRET_ID_FILE": str(credentials / "frontend" / "secret_id"),
        }
        check = run_cli(frontend, "check", "--service", "frontend")
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout == (
            "SESSION_SECRET_KEY: required by frontend: resolved from "
            "vault:secret/legacycointrader/frontend\n"
        )
        got = run_cli(frontend, "get", "SESSION_SECRET_KEY", "--service", "frontend")
        assert got.stdout.strip() == stored["frontend"]["SESSION_SECRET_KEY"]
        refused = run_cli(frontend, "get", "GATEWAY_JWT_PRIVATE_KEY", "--service", "gateway")
        assert refused.returncode == 1
        assert "may not read vault:secret/legacycointrader/" in refused.stderr
        assert "(permission denied)" in refused.stderr


def test_credentials_of_another_server_are_replaced(tmp_path):
    credentials = tmp_path / "credentials"
    with OpenBao(tmp_path) as bao:
        provision_vault(root_settings(bao), credentials)
    old = (credentials / "stub" / "secret_id").read_text()
    with OpenBao(tmp_path) as bao:  # a new, empty dev server: the old secret ids mean nothing
        report = provision_vault(root_settings(bao), credentials)
        assert report.new_secret_ids == list(SERVICES)
        assert (credentials / "stub" / "secret_id").read_text() != old
        token = approle_token(bao, credentials, "stub")
    assert token


def test_provision_migrates_the_single_document_layout(tmp_path):
    with OpenBao(tmp_path) as bao:
        bao.put(BASE, {"FLASK_SECRET_KEY": "f" * 40, "PORTFOLIO_INTERNAL_TOKEN": "t" * 40})
        report = provision_vault(root_settings(bao), tmp_path / "credentials")
        assert bao.read(f"{BASE}/frontend") == {"SESSION_SECRET_KEY": "f" * 40}
        assert bao.read(f"{BASE}/portfolio-gateway") == {"IDENTITY_SERVICE_TOKEN": "t" * 40}
    assert sorted(report.migrated) == ["IDENTITY_SERVICE_TOKEN", "SESSION_SECRET_KEY"]


def test_provision_with_a_service_token_is_refused(provisioned, tmp_path):
    bao, credentials, _ = provisioned
    settings = root_settings(bao).model_copy(
        update={"vault_token": SecretStr(approle_token(bao, credentials, "portfolio"))}
    )
    with pytest.raises(SecretsUnavailableError) as caught:
        provision_vault(settings, tmp_path / "elsewhere")
    assert str(caught.value) == (
        f"Vault at {bao.url} refused VAULT_TOKEN: provisioning needs a root or provisioning "
        "token (policies, auth methods, AppRoles, secrets)"
    )
