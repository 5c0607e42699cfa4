"""The secrets store (Vault) down: a starting service refuses in one line in bounded time,
running services keep serving, a rotation fails cleanly and works once Vault is back."""

import secrets
import subprocess
import sys
from contextlib import ExitStack

import httpx
import pytest

from devstack import REPO_ROOT
from devstack.launch import GATEWAY_APP
from devstack.ports import free_port
from devstack.servers import ServerProcess
from services.portfolio.config import PortfolioSettings
from services.portfolio.identity import PortfolioIdentityService
from shared.secrets import SecretsError, SecretsManager
from shared.secrets.config import SecretsSettings
from tests.faults.conftest import BOUND_SECONDS, PASSWORD
from tests.support.openbao import OpenBao

pytestmark = pytest.mark.e2e

MANAGED = (
    "IDENTITY_SERVICE_TOKEN",
    "GATEWAY_JWT_PRIVATE_KEY",
    "GATEWAY_ASSERTION_PRIVATE_KEY",
    "GATEWAY_ASSERTION_PUBLIC_KEY",
)
SECRET_PATH = "secret/legacycointrader"


@pytest.fixture
def vault(faults, tmp_path):
    double = OpenBao(tmp_path)
    double.start()
    double.put(SECRET_PATH, {name: faults.env[name] for name in MANAGED})
    yield double
    double.stop()


def vault_env(faults, vault) -> dict[str, str]:
    env = {name: value for name, value in faults.env.items() if name not in MANAGED}
    return {
        **env,
        "SECRETS_PROVIDER": "vault",
        "VAULT_ADDR": vault.url,
        "VAULT_TOKEN": vault.root_token,
        "VAULT_SECRET_PATH": SECRET_PATH,
        "VAULT_TIMEOUT": "2",
    }


def test_a_service_starting_without_vault_refuses_in_one_line(faults, vault):
    vault.stop()
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", GATEWAY_APP, "--port", str(free_port())],
        cwd=REPO_ROOT,
        env=vault_env(faults, vault),
        capture_output=True,
        text=True,
        timeout=BOUND_SECONDS * 4,
        check=False,
    )
    assert result.returncode != 0
    assert "gateway cannot start" in result.stderr
    assert "vault" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert vault.root_token not in result.stderr


def test_running_services_keep_serving_while_vault_is_down(faults, vault):
    env = vault_env(faults, vault)
    with ExitStack() as stack:
        portfolio = stack.enter_context(
            ServerProcess(
                "services.portfolio.app:app", env=env, log_path=faults.logs / "vault-portfolio.log"
            )
        )
        gateway = stack.enter_context(
            ServerProcess(
                GATEWAY_APP,
                env={**env, "PORTFOLIO_SERVICE_URL": portfolio.url},
                log_path=faults.logs / "vault-gateway.log",
            )
        )
        name, key = faults.user("trading", api_key=True)
        vault.stop()
        with httpx.Client(base_url=gateway.url, timeout=BOUND_SECONDS) as client:
            login = client.post("/auth/token", json={"username": name, "password": PASSWORD})
            assert login.status_code == 200
            assert client.get("/api/trading/x", headers={"X-API-Key": key}).status_code == 200
            assert client.get("/readyz").status_code == 200


def test_a_rotation_while_vault_is_down_fails_cleanly_and_works_once_it_returns(faults, vault):
    name, old_key = faults.user("trading", api_key=True)
    manager = SecretsManager(
        settings=SecretsSettings(
            secrets_provider="vault",
            vault_addr=vault.url,
            vault_token=vault.root_token,
            vault_secret_path=SECRET_PATH,
            vault_timeout=2,
        ),
        environ={},
    )
    facade = PortfolioIdentityService(
        settings=PortfolioSettings(
            database_url=faults.database_url,
            argon2_time_cost=1,
            argon2_memory_cost=1024,
            argon2_parallelism=1,
        ),
        secrets_manager=manager,
    )
    try:
        vault.stop()
        with pytest.raises(SecretsError) as refused:
            facade.rotate_api_key(name)
        assert vault.root_token not in str(refused.value)
        # Nothing half-done: the old key still works.
        assert faults.identity.verify_api_key(old_key).username == name
        vault.start()  # a dev server comes back empty: the operator puts the next key
        next_key = secrets.token_hex(32)
        vault.put(SECRET_PATH, {"PORTFOLIO_NEW_API_KEY": next_key})
        assert facade.rotate_api_key(name).api_key == next_key
        assert faults.identity.verify_api_key(next_key).username == name
    finally:
        facade.close()
