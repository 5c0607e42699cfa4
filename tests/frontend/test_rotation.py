"""The session secret's rotation: the ceremony, and a frontend started before the new secret
signs, which signs with the previous one until then."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from pydantic import SecretStr

from devstack import REPO_ROOT
from services.frontend.config import FrontendSecrets, Settings
from services.frontend.rotation import fingerprint, not_before_of, startup_secret
from services.frontend.runtime import open_runtime
from services.frontend.sessions import CookieSigner
from shared.secrets.envfile import read_env_file

NOW = 1_800_000_000.0


def secret() -> SecretStr:
    return SecretStr(secrets.token_urlsafe(48))


def test_a_not_before_counts_for_the_secret_it_names_only():
    current, other = secret(), secret()
    value = SecretStr(f"1800000010 {fingerprint(current)}")
    assert not_before_of(value, current) == 1_800_000_010.0
    assert not_before_of(value, other) is None
    assert not_before_of(SecretStr(f"soon {fingerprint(current)}"), current) is None
    assert fingerprint(current) != fingerprint(other)
    assert fingerprint(current) not in current.get_secret_value()


def test_a_frontend_starting_before_the_not_before_signs_with_the_previous_secret():
    current, previous = secret(), secret()
    at = SecretStr(f"{int(NOW) + 10} {fingerprint(current)}")
    assert startup_secret(current, previous, at, now=NOW) == (previous, NOW + 10)
    assert startup_secret(current, previous, at, now=NOW + 10) == (current, None)
    assert startup_secret(current, None, at, now=NOW) == (current, None)


async def test_the_runtime_signs_with_the_previous_secret_and_accepts_the_new_one():
    current, previous = secret(), secret()
    soon = SecretStr(f"{int(time.time()) + 3600} {fingerprint(current)}")
    frontend_secrets = FrontendSecrets(
        session_secret=current, previous_session_secret=previous, not_before=soon
    )
    async with open_runtime(Settings(), frontend_secrets) as runtime:
        signed = runtime.cookie_signer.sign("session-1")
        assert CookieSigner(previous).unsign(signed) == "session-1"
        assert CookieSigner(current).unsign(signed) is None
        # A cookie another frontend signs with the new secret after the not-before counts.
        assert runtime.cookie_signer.unsign(CookieSigner(current).sign("s2")) == "s2"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECRETS_", "SESSION_"))}
    return subprocess.run(
        [sys.executable, "-m", "services.frontend", *args],
        cwd=REPO_ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_ceremony_writes_the_secret_its_not_before_and_the_previous(tmp_path: Path):
    current = secrets.token_urlsafe(48)
    env_file = tmp_path / "stack.env"
    env_file.write_text(f"SESSION_SECRET_KEY={current}\nOTHER=x\n")
    started = time.time()
    result = run_cli(
        "rotate-session-secret", "--env-file", str(env_file), SECRETS_CACHE_TTL_SECONDS="10"
    )
    assert result.returncode == 0, result.stderr
    written = read_env_file(env_file)
    new = written["SESSION_SECRET_KEY"]
    assert new != current
    assert len(new) >= 32
    assert written["SESSION_PREVIOUS_SECRET_KEY"] == current
    assert written["OTHER"] == "x"
    at, named = written["SESSION_SECRET_KEY_NOT_BEFORE"].split(" ")
    assert named == fingerprint(SecretStr(new))
    # 10 s (the interval) + 2 s.
    assert started + 12 <= int(at) <= time.time() + 13
    assert f"wrote secret {named} to {env_file}" in result.stdout
    for value in (current, new):
        assert value not in result.stdout + result.stderr


def test_nothing_to_rotate_is_a_clear_error(tmp_path: Path):
    env_file = tmp_path / "stack.env"
    env_file.write_text("OTHER=x\n")
    result = run_cli("rotate-session-secret", "--env-file", str(env_file))
    assert result.returncode == 1
    assert "missing secret SESSION_SECRET_KEY" in result.stderr
    assert "Traceback" not in result.stderr
