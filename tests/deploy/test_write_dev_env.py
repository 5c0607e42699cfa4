"""scripts/write_dev_env.py: the development `.env` that `make run` writes once."""

from __future__ import annotations

import stat

from honcho.environ import parse

from tests.deploy.support import load_script

write_dev_env = load_script("scripts/write_dev_env.py")


def test_new_env_file_is_private_to_its_owner(tmp_path):
    target = tmp_path / ".env"
    write_dev_env.main(str(target))
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_env_file_uses_env_secrets_and_holds_every_generated_secret(tmp_path):
    target = tmp_path / ".env"
    write_dev_env.main(str(target))
    values = parse(target.read_text())
    assert values["SECRETS_PROVIDER"] == "env"
    assert set(write_dev_env.generate_secrets()) <= set(values)
    assert all(values[name] for name in write_dev_env.generate_secrets())


def test_existing_env_file_is_never_overwritten(tmp_path):
    target = tmp_path / ".env"
    target.write_text("SESSION_SECRET_KEY=kept\n")
    write_dev_env.main(str(target))
    assert target.read_text() == "SESSION_SECRET_KEY=kept\n"
