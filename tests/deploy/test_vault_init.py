"""docker/vault_init.py: which managed secrets the one-shot job generates for Vault."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from devstack import REPO_ROOT
from shared.keys import load_private_key, load_public_key, public_key_text
from shared.secrets.registry import SecretRegistry
from tests.deploy.support import load_script
from tests.support.openbao import ROOT_TOKEN, OpenBao

vault_init = load_script("docker/vault_init.py")
write_dev_env = load_script("scripts/write_dev_env.py")

REGISTRY = SecretRegistry.load()
REQUIRED = {entry.name for entry in REGISTRY if entry.required_by}
JOB = str(REPO_ROOT / "docker" / "vault_init.py")
SECRET_PATH = "secret/legacycointrader"
VAULT_TOKEN = ROOT_TOKEN


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
def vault(tmp_path) -> Iterator[OpenBao]:
    with OpenBao(tmp_path) as server:
        yield server


def job_env(vault: OpenBao, token: str = VAULT_TOKEN) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": vault.url,
        "VAULT_TOKEN": token,
        "VAULT_SECRET_PATH": SECRET_PATH,
    }


def run_job(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *command],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestJobAgainstVault:
    """The job through hvac and HTTP, against a real OpenBao server."""

    def test_first_run_writes_every_required_secret_in_one_version(self, vault):
        result = run_job(job_env(vault), JOB)
        assert result.returncode == 0, result.stderr
        stored = vault.read(SECRET_PATH)
        assert stored is not None
        assert set(stored) == REQUIRED
        assert vault.version(SECRET_PATH) == 1
        for value in stored.values():
            assert value not in result.stdout + result.stderr

    def test_services_resolve_every_secret_from_what_the_job_wrote(self, vault):
        env = job_env(vault)
        assert run_job(env, JOB).returncode == 0
        check = run_job(env, "-m", "shared.secrets", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        for name in REQUIRED:
            assert f"{name}: required by" in check.stdout
        assert check.stdout.count(f"resolved from vault:{SECRET_PATH}") >= len(REQUIRED)

    def test_second_run_keeps_every_secret_and_writes_nothing(self, vault):
        env = job_env(vault)
        assert run_job(env, JOB).returncode == 0
        first = vault.read(SECRET_PATH)
        result = run_job(env, JOB)
        assert result.returncode == 0
        assert "nothing written" in result.stdout
        assert vault.read(SECRET_PATH) == first
        assert vault.version(SECRET_PATH) == 1

    def test_other_keys_and_present_secrets_survive(self, vault):
        vault.put(SECRET_PATH, {"SESSION_SECRET_KEY": "k" * 40, "PORTFOLIO_API_KEY__OPS": "kept"})
        assert run_job(job_env(vault), JOB).returncode == 0
        stored = vault.read(SECRET_PATH)
        assert stored is not None
        assert stored["SESSION_SECRET_KEY"] == "k" * 40
        assert stored["PORTFOLIO_API_KEY__OPS"] == "kept"
        assert set(stored) >= REQUIRED

    def test_refused_token_fails_with_a_clear_line(self, vault):
        result = run_job(job_env(vault, token="not-the-token"), JOB)
        assert result.returncode != 0
        assert f"Vault at {vault.url} refused VAULT_TOKEN" in result.stderr
        assert "Traceback" not in result.stderr
        assert vault.read(SECRET_PATH) is None
