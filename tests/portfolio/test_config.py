"""Settings and start-up secrets: read when the service starts, never at import, and refused
in one line that names what is wrong."""

import subprocess
import sys

import pytest

from devstack import REPO_ROOT
from devstack.servers import ServerProcess
from services.portfolio.app import create_app
from services.portfolio.config import (
    DEFAULT_DATABASE_URL,
    PortfolioSettings,
    load_secrets,
    load_settings,
)
from services.portfolio.errors import ConfigurationError
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY
from tests.portfolio.conftest import env_secrets
from tests.portfolio.http import SERVICE_TOKEN

BAD_SETTING = {"PORTFOLIO_PASSWORD_ROTATION_DAYS": "abc"}


def test_default_database_is_the_repositorys_var_file_whatever_the_cwd(tmp_path):
    assert f"sqlite+aiosqlite:///{REPO_ROOT / 'var' / 'portfolio.db'}" == DEFAULT_DATABASE_URL
    env = {"PATH": "/usr/bin:/bin"}
    script = "from services.portfolio.config import PortfolioSettings; print(PortfolioSettings().database_url.get_secret_value())"
    printed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == DEFAULT_DATABASE_URL


def test_settings_repr_never_shows_the_database_password():
    settings = PortfolioSettings(database_url="postgresql+asyncpg://u:topsecret@db/pf")
    assert "topsecret" not in repr(settings)
    assert "topsecret" not in str(settings.model_dump())


# load_settings


def test_a_bad_setting_is_refused_in_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PORTFOLIO_PASSWORD_ROTATION_DAYS", "abc")
    monkeypatch.setenv("PORTFOLIO_PASSWORD_MIN_LENGTH", "4")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(
        "the portfolio service cannot start: PORTFOLIO_PASSWORD_ROTATION_DAYS: "
    )
    assert "; PORTFOLIO_PASSWORD_MIN_LENGTH: " in message
    assert "\n" not in message


def test_a_bad_value_is_named_but_never_echoed(monkeypatch):
    monkeypatch.setenv("PORTFOLIO_ARGON2_TIME_COST", "s3cret-looking-value")
    with pytest.raises(ConfigurationError, match="PORTFOLIO_ARGON2_TIME_COST") as caught:
        load_settings()
    assert "s3cret-looking-value" not in str(caught.value)


def test_importing_the_app_reads_no_settings():
    done = subprocess.run(
        [sys.executable, "-c", "import services.portfolio.app"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **BAD_SETTING},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


async def test_the_lifespan_reads_the_settings_and_refuses_a_bad_one(monkeypatch):
    for name, value in BAD_SETTING.items():
        monkeypatch.setenv(name, value)
    app = create_app(secrets_manager=env_secrets())
    with pytest.raises(ConfigurationError, match="PORTFOLIO_PASSWORD_ROTATION_DAYS"):
        async with app.router.lifespan_context(app):
            pass


@pytest.mark.e2e
def test_a_real_process_with_a_bad_setting_refuses_in_one_line(sqlite_url, tmp_path):
    env = {
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "SECRETS_PROVIDER": "env",
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
        **BAD_SETTING,
    }
    log = tmp_path / "portfolio.log"
    with pytest.raises(RuntimeError, match="exited"):
        ServerProcess("services.portfolio.app:app", env=env, log_path=log).start()
    text = log.read_text()
    refusals = [line for line in text.splitlines() if "cannot start" in line]
    assert len(refusals) == 1, text
    assert "the portfolio service cannot start: PORTFOLIO_PASSWORD_ROTATION_DAYS: " in refusals[0]
    assert "Traceback" not in text


# load_secrets


async def test_secrets_are_read_through_the_secrets_layer_and_never_shown():
    secrets = await load_secrets(
        env_secrets(
            {
                "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
                "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
            }
        )
    )
    assert secrets.service_token.get_secret_value() == SERVICE_TOKEN
    assert secrets.assertion_public_key.get_secret_value() == ASSERTION_PUBLIC_KEY
    assert SERVICE_TOKEN not in repr(secrets)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY}, "IDENTITY_SERVICE_TOKEN"),
        ({"IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN}, "GATEWAY_ASSERTION_PUBLIC_KEY"),
    ],
)
async def test_a_missing_secret_is_refused_in_one_line_naming_it(environ, named):
    with pytest.raises(ConfigurationError) as caught:
        await load_secrets(env_secrets(environ))
    message = str(caught.value)
    assert message.startswith("the portfolio service cannot start: ")
    assert named in message
    assert "\n" not in message
