"""docker/vault_init.py: the one-shot job that readies Vault (OpenBao) and fills in secrets.

The job runs as a subprocess, as compose runs it, against a real OpenBao server on the
compose config with raft storage, stopped and started again mid-test as a container would be.
"""

from __future__ import annotations

import asyncio
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
JOB = str(REPO_ROOT / "docker" / "vault_init.py")
SECRET_PATH = "secret/legacycointrader"
VAULT_TOKEN = "vault-init-test-token-" + "0" * 24
OTHER_TOKEN = "vault-init-test-token-" + "1" * 24


@pytest.fixture
def generated() -> dict[str, str]:
    values: dict[str, str] = write_dev_env.generate_secrets()
    return values


class TestGeneratedSecrets:
    def test_every_secret_a_service_requires_is_generated(self, generated):
        assert set(generated) == REQUIRED

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


class TestMissingSecrets:
    def test_an_empty_store_gets_every_required_secret(self, generated):
        assert vault_init.missing_secrets({}, generated, REGISTRY) == generated

    def test_a_complete_store_gets_nothing(self, generated):
        existing = write_dev_env.generate_secrets()
        assert vault_init.missing_secrets(existing, generated, REGISTRY) == {}

    def test_existing_values_are_never_replaced(self, generated):
        existing = {"SESSION_SECRET_KEY": "kept-" + "x" * 40}
        missing = vault_init.missing_secrets(existing, generated, REGISTRY)
        assert "SESSION_SECRET_KEY" not in missing
        assert set(missing) == REQUIRED - {"SESSION_SECRET_KEY"}

    def test_a_secret_stored_under_an_alias_counts_as_present(self, generated):
        existing = {"GATEWAY_JWT_SIGNING_KEY": "kept", "PORTFOLIO_INTERNAL_TOKEN": "kept"}
        missing = vault_init.missing_secrets(existing, generated, REGISTRY)
        assert "GATEWAY_JWT_PRIVATE_KEY" not in missing
        assert "IDENTITY_SERVICE_TOKEN" not in missing

    def test_an_empty_value_counts_as_missing(self, generated):
        existing = {**write_dev_env.generate_secrets(), "IDENTITY_SERVICE_TOKEN": ""}
        missing = vault_init.missing_secrets(existing, generated, REGISTRY)
        assert missing == {"IDENTITY_SERVICE_TOKEN": generated["IDENTITY_SERVICE_TOKEN"]}

    @pytest.mark.parametrize(
        "lost", ["GATEWAY_ASSERTION_PRIVATE_KEY", "GATEWAY_ASSERTION_PUBLIC_KEY"]
    )
    def test_half_a_key_pair_is_replaced_by_a_whole_new_pair(self, generated, lost):
        existing = write_dev_env.generate_secrets()
        del existing[lost]
        missing = vault_init.missing_secrets(existing, generated, REGISTRY)
        assert set(missing) == {"GATEWAY_ASSERTION_PRIVATE_KEY", "GATEWAY_ASSERTION_PUBLIC_KEY"}
        private = load_private_key(missing["GATEWAY_ASSERTION_PRIVATE_KEY"])
        assert public_key_text(private) == missing["GATEWAY_ASSERTION_PUBLIC_KEY"]


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
    assert "VAULT_ADDR and VAULT_TOKEN must be set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[PersistentOpenBao]:
    with PersistentOpenBao(tmp_path / "bao") as server:
        yield server


@pytest.fixture
def init_file(tmp_path: Path) -> Path:
    return tmp_path / "vault-unseal" / "init.json"


def job_env(bao: PersistentOpenBao, init_file: Path, token: str = VAULT_TOKEN) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": bao.url,
        "VAULT_TOKEN": token,
        "VAULT_SECRET_PATH": SECRET_PATH,
        "VAULT_INIT_FILE": str(init_file),
        "VAULT_INIT_WAIT_SECONDS": "20",
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


def client(bao: PersistentOpenBao, token: str = VAULT_TOKEN) -> hvac.Client:
    return hvac.Client(url=bao.url, token=token, timeout=5)


def stored(bao: PersistentOpenBao, token: str = VAULT_TOKEN) -> tuple[dict[str, str], int]:
    body = client(bao, token).secrets.kv.v2.read_secret_version(
        path="legacycointrader", mount_point="secret", raise_on_deleted_version=True
    )["data"]
    return body["data"], body["metadata"]["version"]


def write_back(bao: PersistentOpenBao, name: str, value: str) -> str:
    """Write one key the way a service does (portfolio's API-key write-back)."""
    settings = SecretsSettings(
        secrets_provider="vault",
        vault_addr=bao.url,
        vault_token=VAULT_TOKEN,
        vault_secret_path=SECRET_PATH,
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
    def test_initialises_unseals_and_writes_every_required_secret(self, first_start):
        bao, init_file, result = first_start.bao, first_start.init_file, first_start.result
        assert first_start.seal_before["initialized"] is False
        assert result.returncode == 0, result.stderr
        assert bao.seal_status()["sealed"] is False
        data, version = stored(bao)
        assert set(data) == REQUIRED
        assert version == 1
        material = json.loads(init_file.read_text())
        assert stat.S_IMODE(init_file.stat().st_mode) == 0o600
        output = result.stdout + result.stderr
        for value in [*data.values(), material["root_token"], *material["unseal_keys_b64"]]:
            assert value not in output
        assert material["root_token"] != VAULT_TOKEN

    def test_services_resolve_every_secret_from_what_the_job_wrote(self, first_start):
        env = job_env(first_start.bao, first_start.init_file)
        check = run_job(env, "-m", "shared.secrets", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        for name in REQUIRED:
            assert f"{name}: required by" in check.stdout
        assert check.stdout.count(f"resolved from vault:{SECRET_PATH}") >= len(REQUIRED)

    def test_the_services_token_reaches_its_one_secret_only(self, first_start):
        services = client(first_start.bao)
        with pytest.raises(hvac.exceptions.Forbidden):
            services.secrets.kv.v2.create_or_update_secret(
                path="elsewhere", secret={"x": "y"}, mount_point="secret"
            )
        with pytest.raises(hvac.exceptions.Forbidden):
            services.sys.list_mounted_secrets_engines()
        # The services never renew it: it must outlive any ordinary stack.
        assert services.lookup_token()["data"]["ttl"] > 365 * 24 * 3600

    def test_a_second_run_changes_nothing(self, first_start):
        bao, init_file = first_start.bao, first_start.init_file
        before = stored(bao)
        files = {path.name: path.read_bytes() for path in init_file.parent.iterdir()}
        result = run_job(job_env(bao, init_file), JOB)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == [
            f"vault-init: {SECRET_PATH} already holds every required secret; nothing written"
        ]
        assert stored(bao) == before
        assert {path.name: path.read_bytes() for path in init_file.parent.iterdir()} == files

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
                assert set(stored(server)[0]) == REQUIRED
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()


class TestRestart:
    def test_a_restarted_vault_keeps_keys_and_written_back_api_keys(self, bao, init_file):
        env = job_env(bao, init_file)
        assert run_job(env, JOB).returncode == 0
        assert "version 2" in write_back(bao, "PORTFOLIO_API_KEY__OPS", "written-back-value")
        before, version = stored(bao)
        material = init_file.read_text()

        bao.stop()
        bao.start()
        assert bao.seal_status()["sealed"] is True

        result = run_job(env, JOB)
        assert result.returncode == 0, result.stderr
        assert "unsealed Vault" in result.stdout
        assert "nothing written" in result.stdout
        after, version_after = stored(bao)
        assert after == before
        assert after["PORTFOLIO_API_KEY__OPS"] == "written-back-value"
        assert version_after == version == 2
        assert init_file.read_text() == material

    def test_a_changed_vault_token_replaces_the_old_one(self, bao, init_file):
        assert run_job(job_env(bao, init_file), JOB).returncode == 0
        before = stored(bao)
        result = run_job(job_env(bao, init_file, token=OTHER_TOKEN), JOB)
        assert result.returncode == 0, result.stderr
        assert "revoked the services' previous token" in result.stdout
        assert stored(bao, OTHER_TOKEN) == before
        assert client(bao, VAULT_TOKEN).is_authenticated() is False

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
    """Initialised and unsealed by its operator: no init file, VAULT_TOKEN must be valid."""

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
        token: str = material["root_token"]
        return token

    def test_refused_token_fails_with_a_clear_line(self, bao, root, init_file):
        result = run_job(job_env(bao, init_file, token="not-the-token"), JOB)
        assert result.returncode == 1
        assert f"Vault at {bao.url} refused VAULT_TOKEN" in result.stderr
        assert "Traceback" not in result.stderr
        assert not init_file.exists()

    def test_other_keys_and_present_secrets_survive(self, bao, root, init_file):
        client(bao, root).secrets.kv.v2.create_or_update_secret(
            path="legacycointrader",
            secret={"SESSION_SECRET_KEY": "k" * 40, "PORTFOLIO_API_KEY__OPS": "kept"},
            mount_point="secret",
        )
        result = run_job(job_env(bao, init_file, token=root), JOB)
        assert result.returncode == 0, result.stderr
        data, version = stored(bao, root)
        assert data["SESSION_SECRET_KEY"] == "k" * 40
        assert data["PORTFOLIO_API_KEY__OPS"] == "kept"
        assert set(data) >= REQUIRED
        assert version == 2


def test_compose_runs_the_server_version_tested_here():
    printed = subprocess.run(
        [bao_executable(), "version"], capture_output=True, text=True, check=True
    ).stdout
    version = re.search(r"OpenBao v(\d+\.\d+\.\d+)", printed)
    assert version is not None
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["vault"]["image"] == f"openbao/openbao:{version[1]}"
