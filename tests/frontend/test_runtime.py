"""A rotated session secret in a running frontend: new cookies and form passes are signed
with it, those signed with the one before stay valid, older ones do not."""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

from pydantic import SecretStr

from services.frontend.csrf import FormPassSigner
from services.frontend.rotation import fingerprint
from services.frontend.runtime import (
    ACTIVATION_MARGIN_SECONDS,
    _open_manager,
    session_secret_watcher,
)
from services.frontend.sessions import CookieSigner
from shared.secrets import Consumer, SecretsManager, SecretsSettings
from shared.secrets.envfile import write_env_values


def new_secret() -> str:
    return secrets.token_urlsafe(48)


def watched(tmp_path: Path, first: str):
    env_file = tmp_path / ".env"
    env_file.write_text(f"SESSION_SECRET_KEY={first}\n")
    manager = SecretsManager(
        settings=SecretsSettings(secrets_provider="env", secrets_env_file=env_file), environ={}
    )
    cookies = CookieSigner(SecretStr(first))
    forms = FormPassSigner(SecretStr(first), lifetime=600)
    watcher = session_secret_watcher(manager, cookies, forms)
    # The first read + 2 s: sign with a rotated secret at once in these tests.
    watcher.interval = -ACTIVATION_MARGIN_SECONDS
    return env_file, cookies, forms, watcher


async def test_existing_sessions_survive_a_rotation_and_new_ones_use_the_new_secret(tmp_path):
    first, second, third = new_secret(), new_secret(), new_secret()
    env_file, cookies, forms, watcher = watched(tmp_path, first)
    await watcher.prime()
    old_cookie = cookies.sign("session-1")
    old_pass = forms.sign(forms.issue())

    write_env_values(env_file, {"SESSION_SECRET_KEY": second})
    assert await watcher.poll() is True
    assert cookies.unsign(old_cookie) == "session-1"
    assert forms.unsign(old_pass) is not None
    new_cookie = cookies.sign("session-2")
    assert CookieSigner(SecretStr(second)).unsign(new_cookie) == "session-2"
    assert CookieSigner(SecretStr(first)).unsign(new_cookie) is None

    # One rotation later the first secret's cookies are refused; the second's still count.
    write_env_values(env_file, {"SESSION_SECRET_KEY": third})
    assert await watcher.poll() is True
    assert cookies.unsign(old_cookie) is None
    assert forms.unsign(old_pass) is None
    assert cookies.unsign(new_cookie) == "session-2"


async def test_a_short_rotated_secret_is_refused_and_the_current_one_stays(tmp_path, caplog):
    first = new_secret()
    env_file, cookies, _, watcher = watched(tmp_path, first)
    await watcher.prime()
    write_env_values(env_file, {"SESSION_SECRET_KEY": "too-short"})
    with caplog.at_level(logging.ERROR, logger="shared.secrets"):
        assert await watcher.poll() is False
    assert "SESSION_SECRET_KEY is shorter than 32 bytes" in caplog.text
    assert "too-short" not in caplog.text
    assert CookieSigner(SecretStr(first)).unsign(cookies.sign("s")) == "s"


async def test_a_rotated_secret_verifies_at_once_but_signs_only_after_the_interval(tmp_path):
    first, second = new_secret(), new_secret()
    env_file = tmp_path / ".env"
    env_file.write_text(f"SESSION_SECRET_KEY={first}\n")
    manager = SecretsManager(
        settings=SecretsSettings(
            secrets_provider="env", secrets_env_file=env_file, secrets_cache_ttl_seconds=60
        ),
        environ={},
    )
    cookies = CookieSigner(SecretStr(first))
    watcher = session_secret_watcher(manager, cookies, FormPassSigner(SecretStr(first), lifetime=1))
    await watcher.prime()
    write_env_values(env_file, {"SESSION_SECRET_KEY": second})
    assert await watcher.poll() is True
    # Another frontend that read the secret 62 s ago already signs with it: accepted here.
    assert cookies.unsign(CookieSigner(SecretStr(second)).sign("from-b")) == "from-b"
    # This one still signs with the first secret, which every frontend still knows.
    assert CookieSigner(SecretStr(first)).unsign(cookies.sign("from-a")) == "from-a"


def test_the_watcher_reads_the_frontends_paths_only(monkeypatch):
    # With the frontend's AppRole on the per-service layout, any other path is refused.
    monkeypatch.setenv("SECRETS_PROVIDER", "env")
    manager = _open_manager()
    assert manager.service is Consumer.FRONTEND


async def test_the_stored_previous_secret_is_accepted_and_follows_the_store(tmp_path):
    first, second = new_secret(), new_secret()
    env_file, cookies, forms, watcher = watched(tmp_path, second)
    old_cookie = CookieSigner(SecretStr(first)).sign("session-1")
    old_pass = FormPassSigner(SecretStr(first), lifetime=600)
    signed_pass = old_pass.sign(old_pass.issue())
    await watcher.prime()
    assert cookies.unsign(old_cookie) is None

    write_env_values(env_file, {"SESSION_PREVIOUS_SECRET_KEY": first})
    assert await watcher.poll() is True
    assert cookies.unsign(old_cookie) == "session-1"
    assert forms.unsign(signed_pass) is not None
    # New cookies are still signed with the current secret.
    assert CookieSigner(SecretStr(second)).unsign(cookies.sign("s")) == "s"

    write_env_values(env_file, {"SESSION_PREVIOUS_SECRET_KEY": new_secret()})
    assert await watcher.poll() is True
    assert cookies.unsign(old_cookie) is None


async def test_a_running_frontend_signs_a_rotated_secret_from_its_not_before(tmp_path):
    first, second = new_secret(), new_secret()
    env_file, cookies, _, watcher = watched(tmp_path, first)
    await watcher.prime()
    soon = f"{int(time.time()) + 3600} {fingerprint(SecretStr(second))}"
    write_env_values(
        env_file, {"SESSION_SECRET_KEY": second, "SESSION_SECRET_KEY_NOT_BEFORE": soon}
    )
    assert await watcher.poll() is True
    # Without the not-before it would sign at once (this test's interval); with it, not yet.
    assert CookieSigner(SecretStr(first)).unsign(cookies.sign("s")) == "s"
    assert cookies.unsign(CookieSigner(SecretStr(second)).sign("t")) == "t"
