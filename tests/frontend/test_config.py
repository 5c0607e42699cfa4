import pytest
from pydantic import SecretStr, ValidationError

from services.frontend.config import (
    FrontendSecrets,
    SecuritySettings,
    Settings,
    check_session_secret,
    load_secrets,
    load_settings,
)
from services.frontend.errors import StartupError

SECRET_NAMES = ("SESSION_SECRET_KEY", "FLASK_SECRET_KEY", "FRONTEND_SESSION_SECRET")


@pytest.fixture
def bare_environment(monkeypatch):
    """No session secret anywhere, secrets from the environment."""
    for name in SECRET_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRETS_PROVIDER", "env")
    return monkeypatch


def test_defaults_follow_the_guide():
    settings = Settings()
    assert settings.security.session_timeout == 1800
    assert settings.security.session_lifetime == 43200
    assert settings.security.cookie_secure is True
    assert settings.security.max_sessions == 10000
    assert settings.security.max_sessions_per_user == 5
    assert settings.security.form_timeout == 1800
    assert str(settings.gateway_url) == "http://127.0.0.1:8000/"


def test_nested_security_variables_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SECURITY__SESSION_TIMEOUT", "300")
    monkeypatch.setenv("SECURITY__SESSION_LIFETIME", "3600")
    monkeypatch.setenv("SECURITY__COOKIE_SECURE", "false")
    monkeypatch.setenv("GATEWAY_URL", "http://127.0.0.1:9000")
    settings = Settings()
    assert settings.security == SecuritySettings(
        session_timeout=300, session_lifetime=3600, cookie_secure=False
    )
    assert str(settings.gateway_url) == "http://127.0.0.1:9000/"


def test_the_session_limits_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SECURITY__MAX_SESSIONS", "500")
    monkeypatch.setenv("SECURITY__MAX_SESSIONS_PER_USER", "2")
    monkeypatch.setenv("SECURITY__FORM_TIMEOUT", "600")
    security = Settings().security
    assert (security.max_sessions, security.max_sessions_per_user) == (500, 2)
    assert security.form_timeout == 600


@pytest.mark.parametrize("name", ["MAX_SESSIONS", "MAX_SESSIONS_PER_USER", "FORM_TIMEOUT"])
def test_a_session_limit_of_zero_is_refused(monkeypatch, name):
    monkeypatch.setenv(f"SECURITY__{name}", "0")
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()


@pytest.mark.parametrize("value", ["0", "-5", "soon"])
def test_a_session_timeout_that_is_not_a_positive_number_is_refused(monkeypatch, value):
    monkeypatch.setenv("SECURITY__SESSION_TIMEOUT", value)
    with pytest.raises(ValidationError, match="session_timeout"):
        Settings()


def test_a_gateway_url_that_is_not_http_is_refused():
    with pytest.raises(ValidationError, match="gateway_url"):
        Settings(gateway_url="ftp://127.0.0.1")


def test_a_secret_of_32_bytes_is_accepted():
    secret = SecretStr("k" * 32)
    assert check_session_secret(secret) is secret


def test_a_secret_shorter_than_32_bytes_is_refused_without_showing_it():
    with pytest.raises(StartupError, match="SESSION_SECRET_KEY is shorter than 32") as info:
        check_session_secret(SecretStr("tiny-secret-value"))
    assert "tiny-secret-value" not in str(info.value)


def test_secrets_built_directly_are_checked_the_same_way():
    with pytest.raises(StartupError, match="shorter than 32 bytes"):
        FrontendSecrets(SecretStr("tiny-secret-value"))


async def test_the_secret_comes_from_the_secrets_layer(bare_environment):
    bare_environment.setenv("SESSION_SECRET_KEY", "s" * 40)
    assert (await load_secrets()).session_secret.get_secret_value() == "s" * 40


async def test_the_env_file_of_make_run_wins_over_a_stale_environment(bare_environment, tmp_path):
    # A frontend restarted after a rotation of `.env` starts with the rotated secret.
    env_file = tmp_path / ".env"
    env_file.write_text(f"SESSION_SECRET_KEY={'n' * 40}\nSESSION_PREVIOUS_SECRET_KEY={'s' * 40}\n")
    bare_environment.setenv("SESSION_SECRET_KEY", "s" * 40)
    bare_environment.setenv("SECRETS_ENV_FILE", str(env_file))
    secrets = await load_secrets()
    assert secrets.session_secret.get_secret_value() == "n" * 40
    assert secrets.previous_session_secret is not None
    assert secrets.previous_session_secret.get_secret_value() == "s" * 40


@pytest.mark.parametrize("alias", ["FLASK_SECRET_KEY", "FRONTEND_SESSION_SECRET"])
async def test_an_alias_of_the_secret_is_enough(bare_environment, alias):
    bare_environment.setenv(alias, "a" * 40)
    assert (await load_secrets()).session_secret.get_secret_value() == "a" * 40


async def test_a_missing_secret_names_itself_its_aliases_and_the_provider(bare_environment):
    with pytest.raises(StartupError) as info:
        await load_secrets()
    message = str(info.value)
    for name in SECRET_NAMES:
        assert name in message
    assert "SECRETS_PROVIDER=env" in message
    assert "\n" not in message


async def test_a_short_secret_from_the_environment_is_refused(bare_environment):
    bare_environment.setenv("SESSION_SECRET_KEY", "short-secret")
    with pytest.raises(StartupError, match="shorter than") as info:
        await load_secrets()
    assert "short-secret" not in str(info.value)


def test_load_settings_names_each_bad_variable(monkeypatch):
    monkeypatch.setenv("SECURITY__SESSION_LIFETIME", "-1")
    with pytest.raises(StartupError, match="SECURITY__SESSION_LIFETIME"):
        load_settings()
