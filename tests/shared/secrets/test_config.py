"""Secrets settings: every bad configuration is one clear error, never a fall-back."""

import os

import pytest
from pydantic import SecretStr

from shared.secrets import SecretsConfigError, SecretsManager, SecretsSettings

VARIABLE_PREFIXES = ("SECRETS_", "VAULT_", "AWS_")


@pytest.fixture
def clean_env(monkeypatch):
    """Start from an environment without any secrets-layer variable."""
    for name in list(os.environ):
        if name.startswith(VARIABLE_PREFIXES):
            monkeypatch.delenv(name)
    return monkeypatch


def test_default_provider_is_env(clean_env):
    manager = SecretsManager.from_environment()
    assert manager.provider_name == "env"
    assert manager.store_location is None


@pytest.mark.parametrize("value", ["vaultt", "ENVIRONMENT", "gcp", ""])
def test_unknown_provider_names_the_variable_and_the_accepted_values(clean_env, value):
    clean_env.setenv("SECRETS_PROVIDER", value)
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager.from_environment()
    assert str(caught.value) == (
        f"SECRETS_PROVIDER={value} is not supported; accepted values: env, vault, hashicorp, aws"
    )


@pytest.mark.parametrize("value", ["hashicorp", "HashiCorp", "vault", " VAULT "])
def test_hashicorp_is_the_same_provider_as_vault(value):
    assert SecretsSettings(secrets_provider=value).secrets_provider == "vault"


def test_vault_without_address_and_token_names_both(clean_env):
    clean_env.setenv("SECRETS_PROVIDER", "hashicorp")
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager.from_environment()
    assert str(caught.value) == (
        "SECRETS_PROVIDER=vault needs VAULT_ADDR, VAULT_TOKEN (or VAULT_ROLE_ID with "
        "VAULT_SECRET_ID or VAULT_SECRET_ID_FILE); not set: VAULT_ADDR, VAULT_TOKEN"
    )


def test_approle_without_a_secret_id_says_so(clean_env):
    clean_env.setenv("SECRETS_PROVIDER", "vault")
    clean_env.setenv("VAULT_ADDR", "http://127.0.0.1:8200")
    clean_env.setenv("VAULT_ROLE_ID", "a-role-id")
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager.from_environment()
    assert str(caught.value) == (
        "VAULT_ROLE_ID needs VAULT_SECRET_ID or VAULT_SECRET_ID_FILE; neither is set"
    )


def test_unknown_secrets_service_names_the_accepted_ones(clean_env):
    clean_env.setenv("SECRETS_SERVICE", "trading")
    with pytest.raises(SecretsConfigError, match=r"^SECRETS_SERVICE: Input should be 'portfolio'"):
        SecretsSettings.from_environment()


def test_vault_without_token_names_only_the_token(clean_env):
    clean_env.setenv("SECRETS_PROVIDER", "vault")
    clean_env.setenv("VAULT_ADDR", "http://127.0.0.1:8200")
    with pytest.raises(SecretsConfigError, match=r"not set: VAULT_TOKEN$"):
        SecretsManager.from_environment()


def test_aws_without_secret_name_and_region_names_both(clean_env):
    clean_env.setenv("SECRETS_PROVIDER", "aws")
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager.from_environment()
    assert str(caught.value) == (
        "SECRETS_PROVIDER=aws needs AWS_SECRET_NAME, AWS_REGION; not set: AWS_SECRET_NAME, AWS_REGION"
    )


def vault_settings(**overrides) -> SecretsSettings:
    values = {
        "secrets_provider": "vault",
        "vault_addr": "http://127.0.0.1:8200",
        "vault_token": SecretStr("a-token-that-must-not-leak"),
        **overrides,
    }
    return SecretsSettings(**values)


def test_vault_verify_must_be_a_boolean_or_an_existing_bundle():
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager(settings=vault_settings(vault_verify="/nowhere/ca.pem"))
    assert "VAULT_VERIFY=/nowhere/ca.pem is neither true/false nor an existing CA bundle path" in (
        str(caught.value)
    )


@pytest.mark.parametrize(("text", "expected"), [("true", True), ("0", False), ("no", False)])
def test_vault_verify_accepts_booleans(text, expected):
    assert vault_settings(vault_verify=text).vault_verify_value() is expected


def test_vault_verify_accepts_a_ca_bundle_path(tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert vault_settings(vault_verify=str(bundle)).vault_verify_value() == str(bundle)


@pytest.mark.parametrize("path", ["legacycointrader", "secret/", "/"])
def test_vault_secret_path_needs_a_mount_and_a_path(path):
    with pytest.raises(SecretsConfigError, match="must have the form <mount>/<path>"):
        SecretsManager(settings=vault_settings(vault_secret_path=path))


@pytest.mark.parametrize("addr", ["127.0.0.1:8200", "ftp://vault:8200", "http://", "http://h:x"])
def test_vault_address_must_be_http_or_https(addr):
    with pytest.raises(SecretsConfigError, match="VAULT_ADDR must be an http:// or https://"):
        SecretsManager(settings=vault_settings(vault_addr=addr))


@pytest.mark.parametrize(
    "addr", ["http://127.0.0.1:8200?x=1", "http://127.0.0.1:8200/?", "https://vault:8200#frag"]
)
def test_vault_address_with_a_query_string_is_refused(addr):
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager(settings=vault_settings(vault_addr=addr))
    assert str(caught.value) == (
        "VAULT_ADDR must not carry a query string or fragment (the part from ? or #); give only "
        "scheme, host, port and an optional path, e.g. https://vault.example:8200"
    )


def test_vault_address_with_a_password_is_refused_without_showing_it():
    with pytest.raises(SecretsConfigError) as caught:
        SecretsManager(settings=vault_settings(vault_addr="https://ops:hunter2@vault:8200"))
    assert "hunter2" not in str(caught.value)
    assert str(caught.value).startswith("VAULT_ADDR must not carry a user or password")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SECRETS_CACHE_TTL_SECONDS", "-1"), ("VAULT_TIMEOUT", "0"), ("VAULT_TIMEOUT", "soon")],
)
def test_bad_numbers_name_the_variable(clean_env, variable, value):
    clean_env.setenv(variable, value)
    with pytest.raises(SecretsConfigError, match=rf"^{variable}: "):
        SecretsManager.from_environment()


def test_unknown_aws_profile_is_a_configuration_error(clean_env, tmp_path):
    clean_env.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    clean_env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    settings = SecretsSettings(
        secrets_provider="aws", aws_secret_name="x", aws_region="eu-west-1", aws_profile="ghost"
    )
    with pytest.raises(SecretsConfigError, match="AWS_PROFILE=ghost is not a profile"):
        SecretsManager(settings=settings)


def test_registry_path_is_overridable(clean_env, tmp_path):
    registry = tmp_path / "reg.yaml"
    registry.write_text("secrets:\n  - name: ONLY_ONE\n    description: x\n")
    clean_env.setenv("SECRETS_REGISTRY_PATH", str(registry))
    manager = SecretsManager.from_environment()
    assert [entry.name for entry in manager.registry] == ["ONLY_ONE"]


def test_settings_repr_hides_the_vault_token():
    settings = vault_settings()
    assert "a-token-that-must-not-leak" not in repr(settings)
    assert "a-token-that-must-not-leak" not in str(settings)
