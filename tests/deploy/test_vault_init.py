"""docker/vault_init.py: the one-shot job that readies Vault (OpenBao) and provisions it.

The job runs as a subprocess, as compose runs it, against a real OpenBao server on the
compose config with raft storage, stopped and started again mid-test as a container would be.
Each service's credentials, as the job writes them, are then used the way that service uses
them (AppRole login from the files, the per-service layout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
import yaml

from devstack import REPO_ROOT
from shared.keys import load_private_key, load_public_key, public_key_text
from shared.secrets.config import SecretsSettings
from shared.secrets.registry import SecretRegistry
from shared.secrets.stores.vault import VaultStore
from tests.deploy.support import load_script
from tests.support.openbao_persistent import PersistentOpenBao, bao_executable

vault_init = load_script("docker/vault_init.py")
write_dev_env = load_script("scripts/write_dev_env.py")

REGISTRY = SecretRegistry.load()
REQUIRED = {entry.name for entry in REGISTRY if entry.required_by}
# Provisioned too, though a service starts without it.
PROVISIONED = REQUIRED | {"METRICS_SCRAPE_TOKEN", "PORTFOLIO_MFA_ENCRYPTION_KEY"}
JOB = str(REPO_ROOT / "docker" / "vault_init.py")
SECRET_PATH = "secret/legacycointrader"
ROLES = ("gateway", "portfolio", "frontend", "stub")
# The path of what every service reads (the metrics scrape token).
EVERY = "portfolio-gateway-frontend-stub"
# Each service's paths under secret/legacycointrader: what it may read, written out.
READS = {
    "gateway": {"shared", "gateway", "portfolio-gateway", EVERY},
    "portfolio": {"shared", "portfolio-gateway", "portfolio", "api-keys", EVERY},
    "frontend": {"shared", "frontend", EVERY},
    "stub": {"shared", EVERY},
}
PATHS = (
    "shared",
    "gateway",
    "portfolio-gateway",
    "portfolio",
    "frontend",
    "api-keys",
    EVERY,
    "operator",
)
# Where each required secret lives, written out.
HOME = {
    "SESSION_SECRET_KEY": "frontend",
    "GATEWAY_JWT_PRIVATE_KEY": "gateway",
    "GATEWAY_ASSERTION_PRIVATE_KEY": "gateway",
    "GATEWAY_ASSERTION_PUBLIC_KEY": "shared",
    "IDENTITY_SERVICE_TOKEN": "portfolio-gateway",
    "METRICS_SCRAPE_TOKEN": "portfolio-gateway-frontend-stub",
    "PORTFOLIO_MFA_ENCRYPTION_KEY": "portfolio",
}


@pytest.fixture
def generated() -> dict[str, str]:
    values: dict[str, str] = write_dev_env.generate_secrets()
    return values


class TestGeneratedSecrets:
    def test_every_secret_a_service_requires_and_the_scrape_token_are_generated(self, generated):
        assert set(generated) == PROVISIONED

    def test_generated_values_are_long_enough(self, generated):
        for entry in REGISTRY:
            if entry.name in generated and entry.min_length:
                assert len(generated[entry.name]) >= entry.min_length, entry.name

    def test_assertion_public_key_is_the_half_of_its_private_key(self, generated):
        private = load_private_key(generated["GATEWAY_ASSERTION_PRIVATE_KEY"])
        public = load_public_key(generated["GATEWAY_ASSERTION_PUBLIC_KEY"])
        assert public_key_text(private) == public_key_text(public)

    def test_jwt_and_assertion_keys_differ(self, generated):
        assert generated["GATEWAY_JWT_PRIVATE_KEY"] != generated["GATEWAY_ASSERTION_PRIVATE_KEY"]

    def test_each_call_generates_new_values(self, generated):
        again = write_dev_env.generate_secrets()
        assert all(again[name] != value for name, value in generated.items())


def test_job_without_vault_settings_says_what_is_missing():
    env = {"PATH": os.environ["PATH"], "SECRETS_PROVIDER": "vault"}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "docker" / "vault_init.py")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "VAULT_ADDR must be set" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_service_to_rotate_is_refused_by_name():
    result = run_job({"PATH": os.environ["PATH"]}, JOB, "--rotate-secret-id", "trading")
    assert result.returncode == 2
    assert "invalid choice: 'trading'" in result.stderr


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[PersistentOpenBao]:
    with PersistentOpenBao(tmp_path / "bao") as server:
        yield server


@pytest.fixture
def init_file(tmp_path: Path) -> Path:
    return tmp_path / "vault-unseal" / "init.json"


def job_env(bao: PersistentOpenBao, init_file: Path, token: str | None = None) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": bao.url,
        "VAULT_SECRET_PATH": SECRET_PATH,
        "VAULT_INIT_FILE": str(init_file),
        "VAULT_CREDENTIALS_DIR": str(credentials_of(init_file)),
        "VAULT_INIT_WAIT_SECONDS": "20",
    }
    if token is not None:
        env["VAULT_TOKEN"] = token
    return env


def credentials_of(init_file: Path) -> Path:
    return init_file.parent.parent / "vault-credentials"


def service_env(bao: PersistentOpenBao, init_file: Path, role: str) -> dict[str, str]:
    """What compose gives a service: its own credentials files, no token."""
    folder = credentials_of(init_file) / role
    return {
        "PATH": os.environ["PATH"],
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": bao.url,
        "VAULT_SECRET_PATH": SECRET_PATH,
        "VAULT_SECRET_LAYOUT": "per-service",
        "VAULT_ROLE_ID_FILE": str(folder / "role_id"),
        "VAULT_SECRET_ID_FILE": str(folder / "secret_id"),
    }


def run_job(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def root_token(init_file: Path) -> str:
    token: str = json.loads(init_file.read_text())["root_token"]
    return token


def client(bao: PersistentOpenBao, token: str) -> hvac.Client:
    return hvac.Client(url=bao.url, token=token, timeout=5)


def login(bao: PersistentOpenBao, init_file: Path, role: str) -> hvac.Client:
    """Log in with the AppRole files the job wrote for `role`, as that service does."""
    folder = credentials_of(init_file) / role
    service = hvac.Client(url=bao.url, timeout=5)
    service.auth.approle.login(
        role_id=(folder / "role_id").read_text().strip(),
        secret_id=(folder / "secret_id").read_text().strip(),
    )
    return service


def read(vault: hvac.Client, path: str) -> tuple[dict[str, str], int]:
    body = vault.secrets.kv.v2.read_secret_version(
        path=f"legacycointrader/{path}", mount_point="secret", raise_on_deleted_version=True
    )["data"]
    return body["data"], body["metadata"]["version"]


def everything(bao: PersistentOpenBao, init_file: Path) -> dict[str, tuple[dict[str, str], int]]:
    root = client(bao, root_token(init_file))
    found = {}
    for path in PATHS:
        with contextlib.suppress(hvac.exceptions.InvalidPath):
            found[path] = read(root, path)
    return found


def credential_files(init_file: Path) -> dict[str, bytes]:
    folder = credentials_of(init_file)
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*_id")}


def write_back(bao: PersistentOpenBao, init_file: Path, name: str, value: str) -> str:
    """Write one key the way the portfolio does (API-key write-back), with its credentials."""
    folder = credentials_of(init_file) / "portfolio"
    settings = SecretsSettings(
        secrets_provider="vault",
        vault_addr=bao.url,
        vault_role_id_file=folder / "role_id",
        vault_secret_id_file=folder / "secret_id",
        vault_secret_path=SECRET_PATH,
        vault_secret_layout="per-service",
    )

    async def write() -> str:
        store = VaultStore(settings)
        try:
            return await store.write(name, value)
        finally:
            await store.aclose()

    return asyncio.run(write())


@dataclass
class FirstStart:
    bao: PersistentOpenBao
    init_file: Path
    result: subprocess.CompletedProcess[str]
    seal_before: dict[str, object]


@pytest.fixture(scope="class")
def first_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstStart]:
    """One new Vault and the job's first run on it, shared by tests that only read."""
    directory = tmp_path_factory.mktemp("first-start")
    init_file = directory / "vault-unseal" / "init.json"
    with PersistentOpenBao(directory / "bao") as bao:
        seal_before = bao.seal_status()
        yield FirstStart(bao, init_file, run_job(job_env(bao, init_file), JOB), seal_before)


class TestFirstStart:
    def test_initialises_unseals_and_writes_every_required_secret_in_its_home(self, first_start):
        bao, init_file, result = first_start.bao, first_start.init_file, first_start.result
        assert first_start.seal_before["initialized"] is False
        assert result.returncode == 0, result.stderr
        assert bao.seal_status()["sealed"] is False
        stored = everything(bao, init_file)
        for name, path in HOME.items():
            assert stored[path][0][name], name
        assert {name for data, _ in stored.values() for name in data} == PROVISIONED
        assert all(version == 1 for _, version in stored.values())
        assert stat.S_IMODE(init_file.stat().st_mode) == 0o600

    def test_writes_each_services_credentials_private_to_the_jobs_user(self, first_start):
        folder = credentials_of(first_start.init_file)
        assert sorted(path.name for path in folder.iterdir()) == sorted([*ROLES, "prometheus"])
        for role in ROLES:
            assert stat.S_IMODE((folder / role).stat().st_mode) == 0o700
            assert sorted(path.name for path in (folder / role).iterdir()) == [
                "role_id",
                "secret_id",
            ]
            for name in ("role_id", "secret_id"):
                info = (folder / role / name).stat()
                assert stat.S_IMODE(info.st_mode) == 0o600
                # The services run as the job's user (compose: the image's `app`).
                assert info.st_uid == os.getuid()
            assert f"credentials {role}: new secret id" in first_start.result.stdout

    def test_writes_the_scrape_token_for_prometheus_private_to_the_jobs_user(self, first_start):
        stored = everything(first_start.bao, first_start.init_file)
        token = stored[EVERY][0]["METRICS_SCRAPE_TOKEN"]
        assert len(token) >= 32
        file = credentials_of(first_start.init_file) / "prometheus" / "metrics_token"
        assert file.read_text() == token
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        assert file.stat().st_uid == os.getuid()

    def test_prints_no_value(self, first_start):
        bao, init_file, result = first_start.bao, first_start.init_file, first_start.result
        output = result.stdout + result.stderr
        material = json.loads(init_file.read_text())
        values = [v for data, _ in everything(bao, init_file).values() for v in data.values()]
        values += [material["root_token"], *material["unseal_keys_b64"]]
        values += [value.decode().strip() for value in credential_files(init_file).values()]
        for value in values:
            assert value not in output

    @pytest.mark.parametrize("role", ROLES)
    def test_each_services_credentials_read_its_own_paths_only(self, first_start, role):
        service = login(first_start.bao, first_start.init_file, role)
        for path in PATHS:
            if path in READS[role]:
                # Allowed: an answer, or 404 where nothing is stored yet (never 403).
                with contextlib.suppress(hvac.exceptions.InvalidPath):
                    read(service, path)
            else:
                with pytest.raises(hvac.exceptions.Forbidden):
                    read(service, path)
        with pytest.raises(hvac.exceptions.Forbidden):
            read(service, "")
        with pytest.raises(hvac.exceptions.Forbidden):
            service.sys.list_mounted_secrets_engines()

    def test_the_frontend_is_refused_the_gateways_signing_key(self, first_start):
        frontend = login(first_start.bao, first_start.init_file, "frontend")
        with pytest.raises(hvac.exceptions.Forbidden):
            frontend.secrets.kv.v2.read_secret_version(
                path="legacycointrader/gateway",
                mount_point="secret",
                raise_on_deleted_version=True,
            )
        stub = login(first_start.bao, first_start.init_file, "stub")
        with pytest.raises(hvac.exceptions.Forbidden):
            stub.secrets.kv.v2.create_or_update_secret(
                path="legacycointrader/shared", secret={"x": "y"}, mount_point="secret"
            )

    @pytest.mark.parametrize("role", ROLES)
    def test_no_service_writes_deletes_or_grants_but_the_portfolio_its_api_keys(
        self, first_start, role
    ):
        service = login(first_start.bao, first_start.init_file, role)
        kv = service.secrets.kv.v2
        for path in (*PATHS, ""):
            where = f"legacycointrader/{path}".rstrip("/")
            if (role, path) != ("portfolio", "api-keys"):
                with pytest.raises(hvac.exceptions.Forbidden):
                    kv.create_or_update_secret(path=where, secret={"X": "y"}, mount_point="secret")
            # Not even the portfolio may delete a version or a secret.
            with pytest.raises(hvac.exceptions.Forbidden):
                kv.delete_latest_version_of_secret(path=where, mount_point="secret")
            with pytest.raises(hvac.exceptions.Forbidden):
                kv.delete_metadata_and_all_versions(path=where, mount_point="secret")
        # Nor widen its own policy or mint itself another secret id.
        with pytest.raises(hvac.exceptions.Forbidden):
            service.sys.create_or_update_policy(
                name=f"legacycointrader-{role}", policy='path "*" { capabilities = ["read"] }'
            )
        with pytest.raises(hvac.exceptions.Forbidden):
            service.auth.approle.generate_secret_id(role_name=f"legacycointrader-{role}")

    @pytest.mark.parametrize("role", ROLES)
    def test_each_service_resolves_what_it_requires_from_its_credentials(self, first_start, role):
        env = service_env(first_start.bao, first_start.init_file, role)
        check = run_job(env, "-m", "shared.secrets", "check", "--service", role)
        assert check.returncode == 0, check.stdout + check.stderr
        required = {entry.name for entry in REGISTRY if role in entry.required_by}
        for name in required:
            assert f"{name}: required by" in check.stdout
            assert f"resolved from vault:{SECRET_PATH}/{HOME[name]}" in check.stdout
        # Optional, but provisioned: every service reads the metrics scrape token.
        token = run_job(
            env, "-m", "shared.secrets", "get", "METRICS_SCRAPE_TOKEN", "--service", role
        )
        assert token.returncode == 0, token.stderr
        stored = everything(first_start.bao, first_start.init_file)
        assert token.stdout.strip() == stored[EVERY][0]["METRICS_SCRAPE_TOKEN"]

    def test_the_root_token_is_the_jobs_alone_and_no_shared_policy_exists(self, first_start):
        root = client(first_start.bao, root_token(first_start.init_file))
        policies = root.sys.list_policies()["data"]["policies"]
        assert "legacycointrader-services" not in policies
        assert {f"legacycointrader-{role}" for role in ROLES} <= set(policies)

    def test_a_second_run_changes_nothing(self, first_start):
        bao, init_file = first_start.bao, first_start.init_file
        before = everything(bao, init_file)
        files = credential_files(init_file)
        unseal = {path.name: path.read_bytes() for path in init_file.parent.iterdir()}
        result = run_job(job_env(bao, init_file), JOB)
        assert result.returncode == 0, result.stderr
        assert "secrets: every required secret present, nothing written" in result.stdout
        for role in ROLES:
            assert f"credentials {role}: secret id kept" in result.stdout
        assert "new secret id" not in result.stdout
        assert everything(bao, init_file) == before
        assert credential_files(init_file) == files
        assert {path.name: path.read_bytes() for path in init_file.parent.iterdir()} == unseal

    def test_job_waits_for_a_vault_that_is_still_starting(self, tmp_path, init_file):
        server = PersistentOpenBao(tmp_path / "late")
        job = subprocess.Popen(
            [sys.executable, JOB],
            cwd=REPO_ROOT,
            env=job_env(server, init_file),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(1.5)
            assert job.poll() is None, "the job gave up before Vault was started"
            with server:
                _, stderr = job.communicate(timeout=60)
                assert job.returncode == 0, stderr
                assert set(credential_files(init_file)) == {
                    f"{role}/{name}" for role in ROLES for name in ("role_id", "secret_id")
                }
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()


class TestRestart:
    def test_a_restarted_vault_keeps_keys_credentials_and_written_back_api_keys(
        self, bao, init_file
    ):
        env = job_env(bao, init_file)
        assert run_job(env, JOB).returncode == 0
        assert "version 1" in write_back(bao, init_file, "PORTFOLIO_API_KEY__OPS", "written-back")
        before = everything(bao, init_file)
        files = credential_files(init_file)
        material = init_file.read_text()

        bao.stop()
        bao.start()
        assert bao.seal_status()["sealed"] is True

        result = run_job(env, JOB)
        assert result.returncode == 0, result.stderr
        assert "unsealed Vault" in result.stdout
        assert "nothing written" in result.stdout
        after = everything(bao, init_file)
        assert after == before
        assert after["api-keys"] == ({"PORTFOLIO_API_KEY__OPS": "written-back"}, 1)
        assert credential_files(init_file) == files
        assert init_file.read_text() == material
        gateway = login(bao, init_file, "gateway")
        assert read(gateway, "gateway") == before["gateway"]

    def test_rotating_a_secret_id_destroys_the_old_one_and_touches_no_other(self, bao, init_file):
        env = job_env(bao, init_file)
        assert run_job(env, JOB).returncode == 0
        files = credential_files(init_file)
        result = run_job(env, JOB, "--rotate-secret-id", "gateway")
        assert result.returncode == 0, result.stderr
        assert "destroyed the secret id of gateway" in result.stdout
        assert "credentials gateway: new secret id" in result.stdout
        after = credential_files(init_file)
        assert after["gateway/secret_id"] != files["gateway/secret_id"]
        assert {k: v for k, v in after.items() if k != "gateway/secret_id"} == {
            k: v for k, v in files.items() if k != "gateway/secret_id"
        }
        old = hvac.Client(url=bao.url, timeout=5)
        with pytest.raises(hvac.exceptions.InvalidRequest):
            old.auth.approle.login(
                role_id=files["gateway/role_id"].decode().strip(),
                secret_id=files["gateway/secret_id"].decode().strip(),
            )
        read(login(bao, init_file, "gateway"), "gateway")

    def test_a_sealed_vault_without_its_init_file_is_named_not_guessed(self, bao, init_file):
        assert run_job(job_env(bao, init_file), JOB).returncode == 0
        init_file.unlink()
        bao.stop()
        bao.start()
        result = run_job(job_env(bao, init_file), JOB)
        assert result.returncode == 1
        assert f"is sealed and {init_file} does not exist" in result.stderr
        assert "Traceback" not in result.stderr
        assert bao.seal_status()["sealed"] is True

    def test_an_init_file_of_another_vault_is_refused(self, bao, init_file):
        init_file.parent.mkdir(parents=True)
        init_file.write_text('{"unseal_keys_b64": ["a2V5"], "root_token": "old"}')
        result = run_job(job_env(bao, init_file), JOB)
        assert result.returncode == 1
        assert "is not initialised but" in result.stderr
        assert bao.seal_status()["initialized"] is False
        assert init_file.read_text() == '{"unseal_keys_b64": ["a2V5"], "root_token": "old"}'


class TestVaultManagedElsewhere:
    """Initialised and unsealed by its operator: no init file, VAULT_TOKEN provisions."""

    @pytest.fixture
    def root(self, bao) -> str:
        admin = hvac.Client(url=bao.url, timeout=5)
        material = admin.sys.initialize(secret_shares=1, secret_threshold=1)
        admin.sys.submit_unseal_key(material["keys_base64"][0])
        admin.token = material["root_token"]
        deadline = time.monotonic() + 20
        while True:
            try:
                admin.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
                break
            except (hvac.exceptions.InternalServerError, hvac.exceptions.VaultDown):
                assert time.monotonic() < deadline, "vault never became active"
                time.sleep(0.2)
        # A new KV v2 mount answers 400 "... resume service shortly" until it has set itself
        # up; the tests write to it at once, so wait for its first real answer (404).
        while True:
            try:
                admin.secrets.kv.v2.read_secret_version(
                    path="absent", mount_point="secret", raise_on_deleted_version=True
                )
            except hvac.exceptions.InvalidPath:
                break
            except hvac.exceptions.InvalidRequest as exc:
                if "resume service shortly" not in str(exc):
                    raise
                assert time.monotonic() < deadline, "the KV mount never became ready"
                time.sleep(0.2)
        token: str = material["root_token"]
        return token

    def test_without_a_token_the_job_says_what_to_set(self, bao, root, init_file):
        result = run_job(job_env(bao, init_file), JOB)
        assert result.returncode == 1
        assert f"{init_file} does not exist: for a Vault initialised elsewhere" in result.stderr
        assert "set VAULT_TOKEN" in result.stderr
        assert "Traceback" not in result.stderr

    def test_refused_token_fails_with_a_clear_line(self, bao, root, init_file):
        result = run_job(job_env(bao, init_file, token="not-the-token"), JOB)
        assert result.returncode == 1
        assert f"Vault at {bao.url} refused the provisioning token" in result.stderr
        assert "Traceback" not in result.stderr
        assert not init_file.exists()
        assert not credentials_of(init_file).exists()

    def test_a_provisioning_token_short_of_root_is_enough(self, bao, root, init_file):
        admin = client(bao, root)
        # What the job and the provisioning touch, and no more (no policy listing, no sys/*).
        admin.sys.create_or_update_policy(
            "provisioner",
            """
            path "sys/mounts" { capabilities = ["read"] }
            path "sys/auth" { capabilities = ["read"] }
            path "sys/auth/approle" { capabilities = ["create", "update", "sudo"] }
            path "sys/policy/legacycointrader-*" { capabilities = ["create", "update", "read"] }
            path "auth/approle/role/legacycointrader-*" {
              capabilities = ["create", "read", "update"]
            }
            path "secret/data/legacycointrader*" { capabilities = ["create", "read", "update"] }
            path "secret/metadata/legacycointrader*" { capabilities = ["read"] }
            """,
        )
        provisioner = admin.auth.token.create(policies=["provisioner"], no_parent=True)
        token = provisioner["auth"]["client_token"]
        with pytest.raises(hvac.exceptions.Forbidden):
            client(bao, token).sys.list_policies()
        result = run_job(job_env(bao, init_file, token=token), JOB)
        assert result.returncode == 0, result.stdout + result.stderr
        for role in ROLES:
            assert f"credentials {role}: new secret id" in result.stdout
        read(login(bao, init_file, "frontend"), "frontend")

    def test_an_older_stack_moves_to_approle_and_loses_its_shared_token(self, bao, root, init_file):
        """What the job of the single-token days left: one document, one token, its accessor."""
        admin = client(bao, root)
        admin.secrets.kv.v2.create_or_update_secret(
            path="legacycointrader",
            secret={"SESSION_SECRET_KEY": "k" * 40, "PORTFOLIO_API_KEY__OPS": "kept"},
            mount_point="secret",
        )
        admin.sys.create_or_update_policy(
            "legacycointrader-services",
            'path "secret/data/legacycointrader" { capabilities = ["read"] }',
        )
        shared = admin.auth.token.create(policies=["legacycointrader-services"], no_parent=True)
        init_file.parent.mkdir(parents=True)
        accessor_file = init_file.with_name("service-token-accessor")
        accessor_file.write_text(shared["auth"]["accessor"] + "\n")

        result = run_job(job_env(bao, init_file, token=root), JOB)
        assert result.returncode == 0, result.stderr
        assert "revoked the token the services used to share" in result.stdout
        assert "deleted the shared policy legacycointrader-services" in result.stdout
        assert client(bao, shared["auth"]["client_token"]).is_authenticated() is False
        assert "legacycointrader-services" not in admin.sys.list_policies()["data"]["policies"]
        assert not accessor_file.exists()
        # The session key moved into the frontend's path; the old document is left alone.
        frontend = login(bao, init_file, "frontend")
        assert read(frontend, "frontend")[0]["SESSION_SECRET_KEY"] == "k" * 40
        old = admin.secrets.kv.v2.read_secret_version(
            path="legacycointrader", mount_point="secret", raise_on_deleted_version=True
        )["data"]["data"]
        assert old == {"SESSION_SECRET_KEY": "k" * 40, "PORTFOLIO_API_KEY__OPS": "kept"}


def test_the_readmes_rotation_command_is_the_jobs_own_option():
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(
        r"docker compose --env-file compose\.env run --rm vault-init (python docker/vault_init\.py"
        r" --rotate-secret-id frontend)`",
        readme,
    )
    assert found is not None
    argv = found[1].split()[2:]
    assert vault_init.arguments(argv).rotate_secret_id == ["frontend"]


def test_compose_runs_the_server_version_tested_here():
    printed = subprocess.run(
        [bao_executable(), "version"], capture_output=True, text=True, check=True
    ).stdout
    version = re.search(r"OpenBao v(\d+\.\d+\.\d+)", printed)
    assert version is not None
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["vault"]["image"] == f"openbao/openbao:{version[1]}"
