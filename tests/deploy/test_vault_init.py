"""docker/vault_init.py: which managed secrets the one-shot job generates for Vault."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.keys import load_private_key, load_public_key, public_key_text
from shared.secrets.registry import SecretRegistry
from tests.deploy.support import load_script
from tests.support.servers import REPO_ROOT

vault_init = load_script("docker/vault_init.py")
write_dev_env = load_script("scripts/write_dev_env.py")

REGISTRY = SecretRegistry.load()
REQUIRED = {entry.name for entry in REGISTRY if entry.required_by}


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
