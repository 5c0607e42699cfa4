"""`python -m shared.secrets check|get`, run as a subprocess like an operator would."""

import os
import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.ports import free_port
from tests.support.openbao import ROOT_TOKEN, OpenBao

TOKEN = ROOT_TOKEN
SESSION = "session-secret-" + "s" * 32
IDENTITY = "identity-token-" + "i" * 32
JWT_KEY = "jwt-key-value"
ASSERTION_PRIVATE = "assertion-private-value"
ASSERTION_PUBLIC = "assertion-public-value"
ALL_VALUES = (SESSION, IDENTITY, JWT_KEY, ASSERTION_PRIVATE, ASSERTION_PUBLIC)


# Variables that could make a subprocess resolve something this test did not set.
OUTSIDE = (
    "SECRETS_",
    "VAULT_",
    "AWS_",
    "SESSION_",
    "GATEWAY_",
    "FLASK_",
    "FRONTEND_",
    "IDENTITY_",
    "PORTFOLIO_",
)


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {name: value for name, value in os.environ.items() if not name.startswith(OUTSIDE)}
    return subprocess.run(
        [sys.executable, "-m", "shared.secrets", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def everything_required() -> dict[str, str]:
    return {
        "FLASK_SECRET_KEY": SESSION,
        "PORTFOLIO_INTERNAL_TOKEN": IDENTITY,
        "GATEWAY_JWT_PRIVATE_KEY": JWT_KEY,
        "GATEWAY_ASSERTION_PRIVATE_KEY": ASSERTION_PRIVATE,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC,
    }


def assert_no_value_shown(result: subprocess.CompletedProcess[str]) -> None:
    for value in ALL_VALUES:
        assert value not in result.stdout
        assert value not in result.stderr


def test_check_lists_every_managed_secret_and_where_it_resolves():
    result = run("check", **everything_required())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "SESSION_SECRET_KEY: required by frontend: resolved from environment (alias FLASK_SECRET_KEY)",
        "SESSION_PREVIOUS_SECRET_KEY: optional: MISSING",
        "SESSION_SECRET_KEY_NOT_BEFORE: optional: MISSING",
        "GATEWAY_JWT_PRIVATE_KEY: required by gateway: resolved from environment",
        "GATEWAY_JWT_PREVIOUS_PUBLIC_KEY: optional: MISSING",
        "GATEWAY_JWT_PREVIOUS_PRIVATE_KEY: optional: MISSING",
        "GATEWAY_JWT_PRIVATE_KEY_NOT_BEFORE: optional: MISSING",
        "GATEWAY_ASSERTION_PRIVATE_KEY: required by gateway: resolved from environment",
        "GATEWAY_ASSERTION_PUBLIC_KEY: required by portfolio, stub: resolved from environment",
        "GATEWAY_ASSERTION_PREVIOUS_PUBLIC_KEY: optional: MISSING",
        "GATEWAY_ASSERTION_PREVIOUS_PRIVATE_KEY: optional: MISSING",
        "GATEWAY_ASSERTION_PRIVATE_KEY_NOT_BEFORE: optional: MISSING",
        "IDENTITY_SERVICE_TOKEN: required by portfolio, gateway: resolved from environment "
        "(alias PORTFOLIO_INTERNAL_TOKEN)",
        "PORTFOLIO_NEW_API_KEY: optional: MISSING",
        "PORTFOLIO_MFA_ENCRYPTION_KEY: optional: MISSING",
        "METRICS_SCRAPE_TOKEN: optional: MISSING",
    ]
    assert_no_value_shown(result)


def test_check_exits_1_when_a_required_secret_is_missing():
    env = everything_required()
    del env["FLASK_SECRET_KEY"]
    result = run("check", **env)
    assert result.returncode == 1
    assert "SESSION_SECRET_KEY: required by frontend: MISSING" in result.stdout.splitlines()
    assert_no_value_shown(result)


def test_check_for_one_service_lists_only_its_secrets():
    result = run("check", "--service", "frontend", SESSION_SECRET_KEY=SESSION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "SESSION_SECRET_KEY: required by frontend: resolved from environment"
    ]


def test_check_for_one_service_ignores_what_others_miss():
    result = run("check", "--service", "frontend", SESSION_SECRET_KEY=SESSION)
    assert result.returncode == 0
    result = run("check", "--service", "gateway", SESSION_SECRET_KEY=SESSION)
    assert result.returncode == 1


def test_check_reports_a_value_that_is_too_short_without_showing_it():
    result = run("check", "--service", "frontend", SESSION_SECRET_KEY="tiny-secret")
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "SESSION_SECRET_KEY: required by frontend: INVALID (secret SESSION_SECRET_KEY from "
        "environment is shorter than the 32 characters required)"
    ]
    assert "tiny-secret" not in result.stdout


def test_get_prints_the_value_for_scripts():
    result = run("get", "SESSION_SECRET_KEY", FRONTEND_SESSION_SECRET=SESSION)
    assert result.returncode == 0, result.stderr
    assert result.stdout == SESSION + "\n"


def test_get_of_a_missing_secret_exits_1_with_one_line():
    result = run("get", "IDENTITY_SERVICE_TOKEN")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: missing secret IDENTITY_SERVICE_TOKEN (aliases: PORTFOLIO_INTERNAL_TOKEN): "
        "not found in the environment (SECRETS_PROVIDER=env)\n"
    )


def test_unknown_provider_exits_2_naming_the_variable():
    result = run("check", SECRETS_PROVIDER="consul")
    assert result.returncode == 2
    assert result.stderr == (
        "error: SECRETS_PROVIDER=consul is not supported; accepted values: "
        "env, vault, hashicorp, aws\n"
    )


@pytest.fixture(scope="module")
def vault(tmp_path_factory):
    with OpenBao(tmp_path_factory.mktemp("openbao")) as server:
        server.put(
            "secret/legacycointrader",
            {"SESSION_SECRET_KEY": SESSION, "PORTFOLIO_INTERNAL_TOKEN": IDENTITY},
        )
        yield server


def vault_env(vault: OpenBao, token: str = TOKEN) -> dict[str, str]:
    return vault_env_for(vault.url, token)


def vault_env_for(url: str, token: str = TOKEN) -> dict[str, str]:
    return {
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": url,
        "VAULT_TOKEN": token,
        "VAULT_SECRET_PATH": "secret/legacycointrader",
        "VAULT_TIMEOUT": "2",
    }


def test_check_names_the_vault_path_a_secret_came_from(vault):
    result = run(
        "check",
        "--service",
        "portfolio",
        **vault_env(vault),
        GATEWAY_ASSERTION_PUBLIC_KEY=ASSERTION_PUBLIC,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "GATEWAY_ASSERTION_PUBLIC_KEY: required by portfolio, stub: resolved from environment",
        "IDENTITY_SERVICE_TOKEN: required by portfolio, gateway: resolved from "
        "vault:secret/legacycointrader (alias PORTFOLIO_INTERNAL_TOKEN)",
    ]
    assert_no_value_shown(result)


def test_get_reads_from_vault(vault):
    result = run("get", "SESSION_SECRET_KEY", **vault_env(vault))
    assert result.returncode == 0, result.stderr
    assert result.stdout == SESSION + "\n"


def test_check_with_a_rejected_token_exits_1_without_the_token(vault):
    result = run("check", "--service", "frontend", **vault_env(vault, token="hvs.not-the-token"))
    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        "SESSION_SECRET_KEY: required by frontend: UNAVAILABLE (Vault at "
        f"{vault.url} rejected VAULT_TOKEN (permission denied))"
    ]
    assert "hvs.not-the-token" not in result.stdout + result.stderr


def test_check_with_vault_down_reports_every_secret_unavailable():
    result = run("check", **vault_env_for(f"http://127.0.0.1:{free_port()}"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 16
    assert all(": UNAVAILABLE (cannot reach Vault at http://127.0.0.1:" in line for line in lines)


def test_check_with_a_query_string_in_vault_addr_is_a_clear_error():
    result = run("check", **vault_env_for("http://127.0.0.1:8200/?namespace=ops"))
    assert result.returncode == 2
    assert result.stderr == (
        "error: VAULT_ADDR must not carry a query string or fragment (the part from ? or #); "
        "give only scheme, host, port and an optional path, e.g. https://vault.example:8200\n"
    )


def test_check_reads_the_env_file_the_local_stack_uses(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "".join(f"{name}={value}\n" for name, value in everything_required().items())
    )
    result = run("check", "--env-file", str(env_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "GATEWAY_JWT_PRIVATE_KEY: required by gateway: resolved from environment" in (
        result.stdout
    )
    assert [
        line for line in result.stdout.splitlines() if "required by" in line and "MISSING" in line
    ] == []
    assert_no_value_shown(result)


def test_check_of_an_unreadable_env_file_exits_2_naming_it(tmp_path):
    result = run("check", "--env-file", str(tmp_path / "absent.env"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot read {tmp_path / 'absent.env'}")


def test_check_missing_secrets_next_to_a_env_file_says_how_to_read_it(tmp_path):
    (tmp_path / ".env").write_text("")
    base = {name: value for name, value in os.environ.items() if not name.startswith(OUTSIDE)}
    result = subprocess.run(
        [sys.executable, "-m", "shared.secrets", "check"],
        cwd=tmp_path,
        env={**base, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "python -m shared.secrets check --env-file .env" in result.stderr
