"""`shared.secrets.rotate`: the command line every rotation ceremony shares, and its write."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.secrets import SecretsConfigError, SecretsManager, SecretsSettings
from shared.secrets.envfile import read_env_file
from shared.secrets.errors import MissingSecretError
from shared.secrets.rotate import Command, rotation_cli, utc_text, write_rotation


@dataclass(frozen=True)
class Wrote:
    env_file: Path
    not_before: int


def report(command: str, rotation: Wrote, settings: SecretsSettings) -> list[str]:
    return [f"{command}: {rotation.env_file} from {utc_text(rotation.not_before)}", "done"]


async def rotates(manager: SecretsManager, *, env_file: Path) -> Wrote:
    await write_rotation(manager, {"A": "new-a", "B": "new-b"}, env_file=env_file)
    return Wrote(env_file, 86_400)


async def misses(manager: SecretsManager, *, env_file: Path) -> Wrote:
    raise MissingSecretError("SOME_SECRET", (), manager.consulted)


async def misconfigured(manager: SecretsManager, *, env_file: Path) -> Wrote:
    raise SecretsConfigError("the current SOME_SECRET is not a key")


COMMANDS = {
    "rotate-ok": Command(rotates, "rotates", report),
    "rotate-missing": Command(misses, "misses", report),
    "rotate-bad": Command(misconfigured, "misconfigured", report),
}


def cli(*argv: str) -> int:
    return rotation_cli(list(argv), prog="prog", description="test", commands=COMMANDS)


@pytest.fixture(autouse=True)
def env_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    # The command reads its settings from the environment, as an operator runs it.
    for name in ("SECRETS_PROVIDER", "SECRETS_ENV_FILE", "SECRETS_CACHE_TTL_SECONDS"):
        monkeypatch.delenv(name, raising=False)


def test_a_rotation_writes_in_order_prints_its_report_and_exits_0(tmp_path, capsys):
    env_file = tmp_path / "stack.env"
    env_file.write_text("B=old-b\nOTHER=x\n")
    assert cli("rotate-ok", "--env-file", str(env_file)) == 0
    assert read_env_file(env_file) == {"A": "new-a", "B": "new-b", "OTHER": "x"}
    out = capsys.readouterr()
    assert out.out == f"rotate-ok: {env_file} from 1970-01-02 00:00:00\ndone\n"
    assert out.err == ""


def test_the_env_file_defaults_to_secrets_env_file(tmp_path, capsys, monkeypatch):
    env_file = tmp_path / "configured.env"
    env_file.write_text("")
    monkeypatch.setenv("SECRETS_ENV_FILE", str(env_file))
    assert cli("rotate-ok") == 0
    assert read_env_file(env_file)["A"] == "new-a"


@pytest.mark.parametrize(
    ("command", "status", "message"),
    [
        ("rotate-missing", 1, "error: missing secret SOME_SECRET"),
        ("rotate-bad", 2, "error: the current SOME_SECRET is not a key"),
    ],
)
def test_a_failed_rotation_names_why_with_its_exit_status(
    tmp_path, capsys, command, status, message
):
    assert cli(command, "--env-file", str(tmp_path / "x.env")) == status
    out = capsys.readouterr()
    assert out.err.startswith(message)
    assert out.out == ""


def test_a_bad_provider_is_a_configuration_error(capsys, monkeypatch):
    monkeypatch.setenv("SECRETS_PROVIDER", "nowhere")
    assert cli("rotate-ok") == 2
    assert "SECRETS_PROVIDER=nowhere is not supported" in capsys.readouterr().err


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli("rotate-nothing")
    assert exit_.value.code == 2
    assert "invalid choice: 'rotate-nothing'" in capsys.readouterr().err
