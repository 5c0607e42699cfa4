"""docker/compose_env.py and `make compose-env`: compose's credentials, written once."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from devstack import REPO_ROOT
from tests.deploy.support import load_script

compose_env = load_script("docker/compose_env.py")

HEX48 = re.compile(r"[0-9a-f]{48}")
REQUIRED_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?[^}]*\}")


def values(path: Path) -> dict[str, str]:
    pairs = [
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    return {name: value for name, value in pairs}


def test_new_file_holds_every_variable_compose_requires(tmp_path):
    target = tmp_path / "compose.env"
    assert compose_env.main(str(target)) == 0
    written = values(target)
    assert set(written) == {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    required = {
        match["name"]
        for match in REQUIRED_REFERENCE.finditer((REPO_ROOT / "docker-compose.yml").read_text())
    }
    assert required == set(written)
    assert all(HEX48.fullmatch(value) for value in written.values())


def test_an_older_file_with_the_retired_vault_token_is_left_as_it_is(tmp_path, capsys):
    target = tmp_path / "compose.env"
    text = "POSTGRES_PASSWORD=kept\nGRAFANA_ADMIN_PASSWORD=kept\nVAULT_TOKEN=no-longer-read\n"
    target.write_text(text)
    assert compose_env.main(str(target)) == 0
    assert target.read_text() == text
    assert "nothing changed" in capsys.readouterr().out


def test_new_file_is_private_to_its_owner(tmp_path):
    target = tmp_path / "compose.env"
    compose_env.main(str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_second_run_changes_nothing(tmp_path, capsys):
    target = tmp_path / "compose.env"
    compose_env.main(str(target))
    first = target.read_text()
    assert compose_env.main(str(target)) == 0
    assert target.read_text() == first
    assert "nothing changed" in capsys.readouterr().out


def test_a_missing_variable_is_added_and_the_others_kept(tmp_path):
    target = tmp_path / "compose.env"
    target.write_text("# mine\nOTHER=chosen-by-hand")
    assert compose_env.main(str(target)) == 0
    written = values(target)
    assert written["OTHER"] == "chosen-by-hand"
    assert HEX48.fullmatch(written["POSTGRES_PASSWORD"])
    assert target.read_text().startswith("# mine\nOTHER=chosen-by-hand\n")


def test_an_empty_value_is_refused_with_its_name(tmp_path, capsys):
    target = tmp_path / "compose.env"
    target.write_text("POSTGRES_PASSWORD=\nVAULT_TOKEN=abc\n")
    assert compose_env.main(str(target)) == 1
    assert "POSTGRES_PASSWORD is empty" in capsys.readouterr().err
    assert target.read_text() == "POSTGRES_PASSWORD=\nVAULT_TOKEN=abc\n"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_target_writes_the_file_once(tmp_path):
    (tmp_path / "docker").mkdir()
    shutil.copy(REPO_ROOT / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO_ROOT / "docker" / "compose_env.py", tmp_path / "docker" / "compose_env.py")
    run = ["make", "-s", "compose-env"]
    first = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    written = (tmp_path / "compose.env").read_text()
    again = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "compose.env").read_text() == written
    # No value is ever printed.
    for value in values(tmp_path / "compose.env").values():
        assert value not in first.stdout + again.stdout


@pytest.mark.parametrize("ignore_file", [".gitignore", ".dockerignore"])
def test_the_file_is_never_committed_nor_sent_to_a_build(ignore_file):
    assert "compose.env" in (REPO_ROOT / ignore_file).read_text().splitlines()


def compose_section() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    start = readme.index("## docker compose\n")
    return readme[start : readme.index("\n## ", start + 1)]


def test_every_compose_command_in_the_readme_reads_the_env_file():
    commands = re.findall(r"docker compose [^\n`]+", compose_section())
    assert len(commands) >= 8
    for command in commands:
        assert command.startswith("docker compose --env-file compose.env "), command


def test_readme_passes_the_rotation_key_into_the_container():
    section = compose_section()
    assert "export PORTFOLIO_NEW_API_KEY=" in section
    assert "exec -T -e PORTFOLIO_NEW_API_KEY portfolio python -" in section


@pytest.mark.parametrize(
    "case", ["Restart one service", "Restart Vault", "A new shell", "Change the database password"]
)
def test_readme_walks_the_day_two_cases(case):
    assert f"**{case}" in compose_section()
