"""The `.env` file as a rotation target: parsed as honcho does, rewritten in one replace."""

from __future__ import annotations

import threading

import pytest

from shared.secrets.envfile import parse_env_text, read_env_file, write_env_values
from shared.secrets.errors import SecretsConfigError, SecretsUnavailableError


def test_parse_skips_comments_and_strips_quotes_and_export():
    text = "# c\n\nA=1\nexport B=\"two words\"\nC='x=y'\n  D = 4 \nnot a line\n"
    assert parse_env_text(text) == {"A": "1", "B": "two words", "C": "x=y", "D": "4"}


def test_write_keeps_other_lines_replaces_in_place_and_appends_new(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("# head\nA=1\nB=2\nA=shadow\nC=3\n")
    env_file.chmod(0o644)
    write_env_values(env_file, {"A": "new", "D": "4"})
    assert env_file.read_text() == "# head\nA=new\nB=2\nC=3\nD=4\n"
    # Secrets: never readable by others, whatever the file was before.
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [".env"]


def test_concurrent_writes_lose_nothing(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("BASE=1\n")
    threads = [
        threading.Thread(target=write_env_values, args=(env_file, {f"K{i}": str(i)}))
        for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert read_env_file(env_file) == {"BASE": "1", **{f"K{i}": str(i) for i in range(16)}}


def test_a_value_spanning_lines_is_refused_without_writing(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("A=1\n")
    with pytest.raises(SecretsConfigError, match="A: not a value an env file can hold"):
        write_env_values(env_file, {"A": "one\ntwo"})
    assert env_file.read_text() == "A=1\n"


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(SecretsConfigError, match="does not exist; nothing to rotate"):
        write_env_values(tmp_path / "none.env", {"A": "1"})
    with pytest.raises(SecretsUnavailableError, match=r"cannot read .*none\.env"):
        read_env_file(tmp_path / "none.env")
