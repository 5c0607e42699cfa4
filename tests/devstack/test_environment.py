"""The environment of the stack: `.env` under the shell, and where every process listens."""

from __future__ import annotations

from pathlib import Path

from devstack.environment import load_environment, stack_environment
from devstack.ports import resolve_ports
from tests.support.runner import run_devstack


def test_missing_env_file_is_refused_with_the_command_that_writes_it(stack_env, tmp_path):
    missing = tmp_path / "nowhere.env"
    result = run_devstack(stack_env, "--env-file", str(missing))
    assert result.returncode == 2
    assert "scripts/write_dev_env.py" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_shell_wins_over_the_env_file(tmp_path: Path, monkeypatch):
    env_file = tmp_path / "stack.env"
    env_file.write_text("LCT_TEST_CHOICE=file\nLCT_TEST_ONLY_IN_FILE=yes\n")
    monkeypatch.setenv("LCT_TEST_CHOICE", "shell")
    environ = load_environment(env_file)
    assert environ["LCT_TEST_CHOICE"] == "shell"
    assert environ["LCT_TEST_ONLY_IN_FILE"] == "yes"


def test_every_process_is_told_where_the_others_listen():
    env = stack_environment({}, resolve_ports({"LCT_PORTFOLIO_PORT": "9003"}))
    assert env["GATEWAY_URL"] == "http://127.0.0.1:8000"
    assert env["PORTFOLIO_SERVICE_URL"] == "http://127.0.0.1:9003"
    assert env["MONITORING_SERVICE_URL"] == "http://127.0.0.1:8106"


def test_every_process_is_told_which_env_file_to_re_read_for_rotated_secrets(tmp_path: Path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("SESSION_SECRET_KEY=x\n")
    assert load_environment(env_file)["SECRETS_ENV_FILE"] == str(tmp_path / "stack.env")
