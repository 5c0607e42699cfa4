import subprocess
import sys

import pytest
from pydantic import SecretStr

from devstack import REPO_ROOT
from devstack.ports import free_port
from devstack.servers import ServerProcess
from services.frontend.app import create_app
from services.frontend.config import FrontendSecrets
from services.frontend.errors import StartupError

SECRET_NAMES = ("SESSION_SECRET_KEY", "FLASK_SECRET_KEY", "FRONTEND_SESSION_SECRET")


def start_frontend(**secrets: str) -> subprocess.CompletedProcess[str]:
    """Run `uvicorn services.frontend.app:app` with the given secrets and nothing else."""
    env = {"PATH": "/usr/bin:/bin", "SECRETS_PROVIDER": "env", **secrets}
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "services.frontend.app:app", "--port", str(free_port())],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def reason_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "refused to start" in line]


@pytest.mark.e2e
def test_the_process_exits_at_once_without_the_session_secret():
    result = start_frontend()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = reason_lines(result.stderr)
    for name in SECRET_NAMES:
        assert name in line
    assert "SECRETS_PROVIDER=env" in line


@pytest.mark.e2e
def test_the_process_refuses_a_secret_shorter_than_32_bytes():
    result = start_frontend(SESSION_SECRET_KEY="only-twenty-bytes-xx")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = reason_lines(result.stderr)
    assert "SESSION_SECRET_KEY" in line
    assert "shorter than" in line
    assert "only-twenty-bytes-xx" not in result.stderr


@pytest.mark.e2e
def test_the_process_starts_with_an_alias_of_the_secret(tmp_path):
    env = {"SECRETS_PROVIDER": "env", "FRONTEND_SESSION_SECRET": "f" * 48}
    with ServerProcess(
        "services.frontend.app:app", env=env, log_path=tmp_path / "frontend.log"
    ) as server:
        assert server.process is not None
        assert server.process.poll() is None


def test_building_the_app_with_a_short_secret_is_refused():
    with pytest.raises(StartupError, match="shorter than 32 bytes"):
        create_app(secrets=FrontendSecrets(SecretStr("short")))


async def test_there_is_no_api_documentation_surface(frontend):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert (await frontend.client.get(path)).status_code == 404


async def test_health_answers_ok(frontend):
    response = await frontend.client.get("/healthz")
    assert response.json() == {"status": "ok"}


@pytest.mark.e2e
def test_a_bad_setting_is_named_in_one_line():
    result = start_frontend(
        SESSION_SECRET_KEY="s" * 40, SECURITY__SESSION_TIMEOUT="soon", GATEWAY_URL="ftp://x"
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    [line] = reason_lines(result.stderr)
    assert "SECURITY__SESSION_TIMEOUT" in line
    assert "GATEWAY_URL" in line


async def test_readyz_is_503_naming_the_gateway_when_it_is_down(frontend):
    response = await frontend.client.get("/readyz")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert error["checks"] == {
        "gateway": {"status": "down", "required": True, "detail": "unreachable (ConnectError)"}
    }


@pytest.mark.e2e
async def test_readyz_is_200_while_the_real_gateway_is_ready(live):
    response = await live.client.get("/readyz")
    assert (response.status_code, response.json()) == (
        200,
        {
            "status": "ready",
            "degraded": [],
            "checks": {
                "gateway": {"status": "up", "required": True, "detail": "its /readyz answers 200"}
            },
        },
    )
