"""No silent fall-back to another database: a configured database that cannot be reached
stops the service (or the call); the embedded SQLite default is never used instead."""

import subprocess
import sys

import pytest
from sqlalchemy.engine import make_url

from devstack import REPO_ROOT
from devstack.ports import free_port
from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import DatabaseUnavailableError
from services.portfolio.identity import PortfolioIdentityService


def unreachable_urls(stack) -> dict[str, str]:
    configured = make_url(stack.database_url)
    return {
        "closed port": configured.set(port=free_port()).render_as_string(hide_password=False),
        "missing database": configured.set(database="lct_no_such_database").render_as_string(
            hide_password=False
        ),
    }


@pytest.mark.parametrize("case", ["closed port", "missing database"])
def test_the_service_refuses_to_start_rather_than_use_another_database(stack, case):
    url = unreachable_urls(stack)[case]
    env = {**stack.env, "PORTFOLIO_DATABASE_URL": url, "PORTFOLIO_DATABASE_CONNECT_TIMEOUT": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "services.portfolio.app:app", "--port", str(free_port())],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "PostgreSQL" in output
    assert "SQLite" not in output
    assert "Application startup complete" not in output


@pytest.mark.parametrize("case", ["closed port", "missing database"])
def test_the_identity_facade_raises_rather_than_use_another_database(stack, case):
    settings = PortfolioSettings(
        database_url=unreachable_urls(stack)[case], database_connect_timeout=2
    )
    with pytest.raises(DatabaseUnavailableError):
        PortfolioIdentityService(settings=settings)
