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
    kept = "SESSION_SECRET_KEY=kept\n" + "".join(
        f"{name}=kept-{name}\n" for name in write_dev_env.ADDED_LATER
    )
    target.write_text(kept)
    write_dev_env.main(str(target))
    assert target.read_text() == kept


def test_an_older_env_file_gains_only_the_later_secrets_it_lacks(tmp_path, capsys):
    target = tmp_path / ".env"
    older = "SECRETS_PROVIDER=env\nSESSION_SECRET_KEY=kept\nMETRICS_SCRAPE_TOKEN=mine"
    target.write_text(older)
    target.chmod(0o600)
    write_dev_env.main(str(target))
    text = target.read_text()
    assert text.startswith(older + "\n")
    values = parse(text)
    assert values["SESSION_SECRET_KEY"] == "kept"
    assert values["METRICS_SCRAPE_TOKEN"] == "mine"
    assert len(values["PORTFOLIO_MFA_ENCRYPTION_KEY"]) >= 32
    # Only the missing later secret: no second session key, no key pair half.
    assert set(values) == {
        "SECRETS_PROVIDER",
        "SESSION_SECRET_KEY",
        "METRICS_SCRAPE_TOKEN",
        "PORTFOLIO_MFA_ENCRYPTION_KEY",
    }
    out = capsys.readouterr().out
    assert "PORTFOLIO_MFA_ENCRYPTION_KEY" in out
    assert values["PORTFOLIO_MFA_ENCRYPTION_KEY"] not in out
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # A second run finds nothing to add.
    write_dev_env.main(str(target))
    assert target.read_text() == text
