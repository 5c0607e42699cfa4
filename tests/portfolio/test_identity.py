"""`PortfolioIdentityService`: the synchronous facade, and the guide's two snippets verbatim."""

import pytest
from pydantic import SecretStr

from services.portfolio.errors import (
    DatabaseUnavailableError,
    InvalidCredentialsError,
    PasswordExpiredError,
    UserExistsError,
)
from services.portfolio.identity import PortfolioIdentityService
from shared.secrets import SecretRegistry, SecretsManager, SecretsSettings, api_key_secret_name
from tests.portfolio.conftest import CHEAP_ARGON2_ENV, PASSWORD, env_secrets, make_settings
from tests.support.guide import GUIDE_CREATE_USER, GUIDE_ROTATE_API_KEY, run_guide_block
from tests.support.openbao import ROOT_TOKEN, OpenBao

VAULT_TOKEN = ROOT_TOKEN


@pytest.fixture
def facade(database_url):
    with PortfolioIdentityService(
        settings=make_settings(database_url), secrets_manager=env_secrets()
    ) as identity:
        yield identity


def test_facade_covers_the_whole_user_lifecycle_without_await(facade):
    user = facade.create_user("ops", PASSWORD, roles=["portfolio"])
    assert user.roles == ["portfolio"]
    assert facade.authenticate("ops", PASSWORD).last_login_at is not None
    result = facade.rotate_api_key("ops")
    assert facade.verify_api_key(result.api_key).username == "ops"
    assert facade.set_roles("ops", ["market"]).roles == ["market"]
    assert facade.rotate_password("ops", PASSWORD, "a fresh long passphrase").username == "ops"
    assert [u.username for u in facade.list_users()] == ["ops"]
    assert not facade.deactivate_user("ops").is_active
    assert not facade.get_user("ops").is_active


def test_facade_raises_the_domain_errors(facade):
    facade.create_user("ops", PASSWORD, roles=["portfolio"])
    with pytest.raises(UserExistsError):
        facade.create_user("OPS", PASSWORD, roles=["portfolio"])
    with pytest.raises(InvalidCredentialsError):
        facade.authenticate("ops", "wrong password here")


def test_must_change_password_is_accepted_by_the_facade(facade):
    facade.create_user("admin", PASSWORD, roles=["admin"], must_change_password=True)
    with pytest.raises(PasswordExpiredError):
        facade.authenticate("admin", PASSWORD)


async def test_facade_works_inside_a_running_event_loop(facade):
    user = facade.create_user("loopy", PASSWORD, roles=["trading"])
    assert facade.get_user("loopy") == user


def test_facade_migrates_a_new_database_and_a_second_one_sees_the_data(database_url):
    settings = make_settings(database_url)
    with PortfolioIdentityService(settings=settings) as first:
        first.create_user("shared", PASSWORD, roles=["trading"])
    with PortfolioIdentityService(database_url, settings=make_settings("sqlite://")) as second:
        assert [u.username for u in second.list_users()] == ["shared"]


def test_closed_facade_refuses_calls(sqlite_url):
    identity = PortfolioIdentityService(settings=make_settings(sqlite_url))
    identity.close()
    identity.close()
    with pytest.raises(RuntimeError, match="closed"):
        identity.list_users()


@pytest.mark.postgres
def test_unreachable_database_fails_at_construction_with_one_clear_error():
    url = "postgresql+asyncpg://postgres:hunter2-secret@127.0.0.1:1/portfolio"
    with pytest.raises(DatabaseUnavailableError) as caught:
        PortfolioIdentityService(url)
    assert "hunter2" not in str(caught.value)
    assert "127.0.0.1:1" in str(caught.value)


def test_rotated_key_is_written_back_to_a_managed_store(sqlite_url, tmp_path):
    with OpenBao(tmp_path) as vault:
        vault.put("secret/lct", {"PORTFOLIO_NEW_API_KEY": "from-vault-" + "v" * 40})
        manager = SecretsManager(
            settings=SecretsSettings(
                secrets_provider="vault",
                vault_addr=vault.url,
                vault_token=SecretStr(VAULT_TOKEN),
                vault_secret_path="secret/lct",
                secrets_cache_ttl_seconds=0,
            ),
            registry=SecretRegistry.load(),
            environ={"PORTFOLIO_NEW_API_KEY": "from-environment-" + "e" * 40},
        )
        with PortfolioIdentityService(
            settings=make_settings(sqlite_url), secrets_manager=manager
        ) as identity:
            identity.create_user("bot", PASSWORD, roles=["market"])
            result = identity.rotate_api_key("bot")
            stored = vault.read("secret/lct")
    assert result.api_key == "from-vault-" + "v" * 40
    assert result.stored_at is not None
    assert "secret/lct" in result.stored_at
    assert stored is not None
    assert stored[api_key_secret_name("bot")] == result.api_key
    assert stored["PORTFOLIO_NEW_API_KEY"] == result.api_key


def test_guide_snippets_run_verbatim(database_url):
    env = {"PORTFOLIO_DATABASE_URL": database_url, "SECRETS_PROVIDER": "env"}

    created = run_guide_block(GUIDE_CREATE_USER, env)
    assert created.returncode == 0, created.stderr
    assert created.stdout == (
        "Created user security-admin with roles: ['admin', 'portfolio', 'trading']\n"
    )

    rotated = run_guide_block(GUIDE_ROTATE_API_KEY, env)
    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout == (
        "API key for security-admin rotated; updated secret is available via the managed store.\n"
    )

    with PortfolioIdentityService(database_url) as identity:
        user = identity.get_user("security-admin")
        assert user.api_key_id is not None
        assert user.api_key_last_rotated_at is not None
        assert identity.authenticate("security-admin", "change_me_now!").username == (
            "security-admin"
        )


def test_guide_rotation_with_vault_stores_the_key_in_the_managed_store(sqlite_url, tmp_path):
    with OpenBao(tmp_path) as vault:
        vault.put("secret/legacycointrader", {"IDENTITY_SERVICE_TOKEN": "t" * 40})
        env = {
            "PORTFOLIO_DATABASE_URL": sqlite_url,
            "SECRETS_PROVIDER": "vault",
            "VAULT_ADDR": vault.url,
            "VAULT_TOKEN": VAULT_TOKEN,
            "VAULT_SECRET_PATH": "secret/legacycointrader",
            **CHEAP_ARGON2_ENV,
        }
        assert run_guide_block(GUIDE_CREATE_USER, env).returncode == 0
        rotated = run_guide_block(GUIDE_ROTATE_API_KEY, env)
        assert rotated.returncode == 0, rotated.stderr
        stored = vault.read("secret/legacycointrader")
    assert stored is not None
    assert stored["IDENTITY_SERVICE_TOKEN"] == "t" * 40
    key = stored[api_key_secret_name("security-admin")]
    assert len(key) == 64
    with PortfolioIdentityService(sqlite_url) as identity:
        assert identity.verify_api_key(key).username == "security-admin"
