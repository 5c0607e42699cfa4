"""Two frontend processes on one Redis share sign-in, idle time, sign-out, CSRF, survive a
restart, and take up a rotated session secret without signing anybody out; Redis holds no
password, token or session id."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
from pydantic import SecretStr

from devstack import REPO_ROOT
from devstack.servers import ServerProcess
from shared.secrets import SecretsSettings
from shared.secrets.envfile import read_env_file
from shared.secrets.generate import generate_secrets
from shared.secrets.provision import provision_vault
from tests.frontend.stack import PASSWORD, Stack
from tests.support.openbao_dev import OpenBaoDev
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

FRONTEND_APP = "services.frontend.app:app"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
TIMEOUT = httpx.Timeout(30.0)


def frontend_env(stack: Stack, secret: str, redis_url: str) -> dict[str, str]:
    return {
        "SECRETS_PROVIDER": "env",
        "SESSION_SECRET_KEY": secret,
        "GATEWAY_URL": stack.gateway_url,
        "SECURITY__COOKIE_SECURE": "false",  # plain HTTP on loopback
        "FRONTEND_SESSION_URL": redis_url,
    }


def start(stack: Stack, env: dict[str, str]) -> ServerProcess:
    log = stack.log_dir / f"frontend-{secrets.token_hex(3)}.log"
    return ServerProcess(FRONTEND_APP, env=env, log_path=log).start()


def csrf(client: httpx.Client, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text[:300]
    match = CSRF_FIELD.search(page.text)
    assert match, f"{path} has no CSRF field"
    return match.group(1)


def sign_in(client: httpx.Client, username: str) -> None:
    token = csrf(client, "/login")
    response = client.post(
        "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"] == "/dashboard"


def on(url: str, cookies: httpx.Cookies) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=TIMEOUT, cookies=cookies)


def test_two_frontends_share_sign_in_csrf_and_sign_out(stack: Stack, tmp_path):
    secret = secrets.token_urlsafe(48)
    with RedisServer(tmp_path) as redis_server:
        env = frontend_env(stack, secret, redis_server.url)
        first, second = start(stack, env), start(stack, env)
        try:
            username = stack.user("portfolio")
            with httpx.Client(base_url=first.url, timeout=TIMEOUT) as a:
                sign_in(a, username)
                with on(second.url, a.cookies) as b:
                    dashboard = b.get("/dashboard")
                    assert dashboard.status_code == 200
                    assert username in dashboard.text
                    # The CSRF token of a page served by one replica is good on the other.
                    token = csrf(a, "/dashboard")
                    assert b.post("/logout", data={"csrf_token": token}).status_code == 303
                gone = a.get("/dashboard")
                assert gone.status_code == 303
                assert gone.headers["location"].startswith("/login")
        finally:
            first.stop()
            second.stop()


def test_a_restarted_frontend_keeps_its_sessions(stack: Stack, tmp_path):
    secret = secrets.token_urlsafe(48)
    with RedisServer(tmp_path) as redis_server:
        env = frontend_env(stack, secret, redis_server.url)
        frontend = start(stack, env)
        username = stack.user("portfolio")
        try:
            with httpx.Client(base_url=frontend.url, timeout=TIMEOUT) as client:
                sign_in(client, username)
                cookies = client.cookies
        finally:
            frontend.stop()
        again = start(stack, env)
        try:
            with on(again.url, cookies) as client:
                dashboard = client.get("/dashboard")
            assert dashboard.status_code == 200
            assert username in dashboard.text
        finally:
            again.stop()


def test_redis_down_is_a_clear_error_page_never_a_sign_in(stack: Stack, tmp_path):
    secret = secrets.token_urlsafe(48)
    redis_server = RedisServer(tmp_path).start()
    env = frontend_env(stack, secret, redis_server.url)
    frontend = start(stack, env)
    username = stack.user("portfolio")
    try:
        with httpx.Client(base_url=frontend.url, timeout=TIMEOUT) as client:
            sign_in(client, username)
            redis_server.stop()
            page = client.get("/dashboard", headers={"Accept": "text/html"})
            assert page.status_code == 503
            assert "session store cannot be reached" in page.text
            assert "Traceback" not in page.text
            assert username not in page.text
        with httpx.Client(base_url=frontend.url, timeout=TIMEOUT) as newcomer:
            token = csrf(newcomer, "/login")  # the login page itself needs no store
            refused = newcomer.post(
                "/login", data={"username": username, "password": PASSWORD, "csrf_token": token}
            )
            assert refused.status_code == 503
            assert "session store cannot be reached" in refused.text
            assert newcomer.get("/dashboard").status_code != 200
        log = frontend.log_path.read_text()
        assert "the session store (Redis) cannot be reached" in log
        assert "Traceback" not in log
    finally:
        frontend.stop()
        redis_server.stop()


@dataclass
class SessionSecretHome:
    """Where the frontends read the session secret, and the rotation run against it."""

    frontend_env: dict[str, str]
    rotation_env: dict[str, str]
    read: Callable[[], dict[str, str]]

    def rotate(self) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SECRETS_", "SESSION_"))}
        result = subprocess.run(
            [sys.executable, "-m", "services.frontend", "rotate-session-secret"],
            cwd=REPO_ROOT,
            env={**clean, **self.rotation_env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr


@pytest.fixture(params=["env-file", "vault-approle"])
def session_secret_home(request, tmp_path) -> Iterator[tuple[str, SessionSecretHome]]:
    old = secrets.token_urlsafe(48)
    interval = {"SECRETS_CACHE_TTL_SECONDS": "1"}
    if request.param == "env-file":
        # As `make run` starts them: the secrets in the environment and in SECRETS_ENV_FILE,
        # which running frontends re-read every SECRETS_CACHE_TTL_SECONDS.
        env_file = tmp_path / "frontend.env"
        env_file.write_text(f"SESSION_SECRET_KEY={old}\n")
        on_file = {"SECRETS_PROVIDER": "env", "SECRETS_ENV_FILE": str(env_file), **interval}
        yield (
            old,
            SessionSecretHome(
                frontend_env={**on_file, "SESSION_SECRET_KEY": old},
                rotation_env=on_file,
                read=lambda: read_env_file(env_file),
            ),
        )
        return
    # As compose runs it: the per-service layout, the frontend with its own AppRole, the
    # rotation with the root token (vault-init's).
    with OpenBaoDev(log_path=tmp_path / "bao.log") as bao:
        root = bao.env("legacycointrader")
        credentials = tmp_path / "credentials"
        provision_vault(
            SecretsSettings(
                secrets_provider="vault",
                vault_addr=bao.url,
                vault_token=SecretStr(bao.root_token),
                vault_secret_path=root["VAULT_SECRET_PATH"],
                vault_secret_layout="per-service",
            ),
            credentials,
            generate=lambda: {**generate_secrets(), "SESSION_SECRET_KEY": old},
        )
        per_service = {**root, "VAULT_SECRET_LAYOUT": "per-service", **interval}
        frontend = {k: v for k, v in per_service.items() if k != "VAULT_TOKEN"}
        yield (
            old,
            SessionSecretHome(
                frontend_env={
                    **frontend,
                    "VAULT_ROLE_ID_FILE": str(credentials / "frontend" / "role_id"),
                    "VAULT_SECRET_ID_FILE": str(credentials / "frontend" / "secret_id"),
                },
                rotation_env=per_service,
                read=lambda: {k: str(v) for k, v in bao.read("legacycointrader/frontend").items()},
            ),
        )


def test_a_rotated_session_secret_signs_nobody_out_of_two_running_frontends(
    stack: Stack, tmp_path, session_secret_home: tuple[str, SessionSecretHome]
):
    old, home = session_secret_home
    with RedisServer(tmp_path) as redis_server:
        base = frontend_env(stack, old, redis_server.url)
        del base["SESSION_SECRET_KEY"]
        env = {**base, **home.frontend_env}
        first, second = start(stack, env), start(stack, env)
        pids = [process.process.pid for process in (first, second) if process.process]
        late: ServerProcess | None = None
        try:
            username = stack.user("portfolio")
            with httpx.Client(base_url=first.url, timeout=TIMEOUT) as a:
                sign_in(a, username)
                signed_before = httpx.Cookies(a.cookies)
                with on(second.url, a.cookies) as b:
                    home.rotate()
                    written = home.read()
                    new = written["SESSION_SECRET_KEY"]
                    assert new != old
                    assert written["SESSION_PREVIOUS_SECRET_KEY"] == old
                    not_before = int(written["SESSION_SECRET_KEY_NOT_BEFORE"].split()[0])
                    # Through the switch and past it, the session goes on on both.
                    answers = []
                    while time.time() < not_before + 3:
                        for client in (a, b):
                            page = client.get("/dashboard")
                            answers.append((page.status_code, username in page.text))
                        time.sleep(0.2)
                    assert set(answers) == {(200, True)}
                    assert len(answers) >= 20
                # The cookie signed before the rotation is still good after the switch.
                with on(second.url, signed_before) as stale:
                    assert stale.get("/dashboard").status_code == 200
            # A sign-in after the switch is signed and sealed with the new secret alone: a
            # frontend that knows nothing but the new secret serves it, and refuses the
            # cookie from before the rotation.
            with httpx.Client(base_url=second.url, timeout=TIMEOUT) as fresh:
                sign_in(fresh, username)
                late = start(stack, frontend_env(stack, new, redis_server.url))
                with on(late.url, fresh.cookies) as there:
                    page = there.get("/dashboard")
                    assert page.status_code == 200
                    assert username in page.text
            with on(late.url, signed_before) as stale:
                assert stale.get("/dashboard").status_code == 303
            # Nothing restarted, and no log holds either secret.
            assert [process.process.pid for process in (first, second) if process.process] == pids
            for process in (first, second):
                assert process.process is not None
                assert process.process.poll() is None
                log = process.log_path.read_text()
                assert old not in log
                assert new not in log
        finally:
            for process in (first, second, late):
                if process is not None:
                    process.stop()


def redis_dump(url: str) -> str:
    """Return every key and value in the Redis at `url` as one string."""
    parts: list[str] = []
    with redis.Redis.from_url(url, decode_responses=True) as client:
        for key in client.scan_iter():
            kind = client.type(key)
            value: object = {
                "hash": client.hgetall,
                "string": client.get,
                "set": client.smembers,
                "list": lambda k: client.lrange(k, 0, -1),
                "zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            }[kind](key)
            parts.append(f"{key} {kind} {value!r}")
    return "\n".join(parts)


def test_a_real_sign_in_leaves_no_password_token_or_session_id_in_redis(stack: Stack, tmp_path):
    with RedisServer(tmp_path) as redis_server:
        frontend = start(stack, frontend_env(stack, secrets.token_urlsafe(48), redis_server.url))
        try:
            username = stack.user("portfolio")
            with httpx.Client(base_url=frontend.url, timeout=TIMEOUT) as client:
                sign_in(client, username)
                assert client.get("/dashboard").status_code == 200
                (cookie,) = client.cookies.values()
            dump = redis_dump(redis_server.url)
        finally:
            frontend.stop()
    assert username in dump  # the session is there
    session_id = cookie.rpartition(".")[0]
    assert session_id
    assert session_id not in dump
    assert PASSWORD not in dump
    assert "eyJ" not in dump, "a JWT (or a JSON document in base64) in clear"


def test_idle_time_is_shared_and_ends_the_session_on_every_frontend(stack: Stack, tmp_path):
    idle = 6.0
    with RedisServer(tmp_path) as redis_server:
        env = frontend_env(stack, secrets.token_urlsafe(48), redis_server.url)
        env["SECURITY__SESSION_TIMEOUT"] = str(int(idle))
        first, second = start(stack, env), start(stack, env)
        try:
            username = stack.user("portfolio")
            with httpx.Client(base_url=first.url, timeout=TIMEOUT) as a:
                # The login form of one frontend is accepted by the other.
                token = csrf(a, "/login")
                with on(second.url, a.cookies) as b:
                    signed_in = b.post(
                        "/login",
                        data={"username": username, "password": PASSWORD, "csrf_token": token},
                    )
                    assert signed_in.status_code == 303, signed_in.text[:300]
                    a.cookies.update(b.cookies)
                    start_at = time.monotonic()
                    time.sleep(idle * 0.7)
                    assert b.get("/dashboard").status_code == 200  # activity on the second
                    # Past the first deadline: the first frontend saw the second's activity.
                    time.sleep(max(0.0, start_at + idle * 1.4 - time.monotonic()))
                    assert a.get("/dashboard").status_code == 200
                    time.sleep(idle + 1.5)  # nobody active
                    for client in (a, b):
                        gone = client.get("/dashboard")
                        assert gone.status_code == 303
                        assert gone.headers["location"].startswith("/login")
        finally:
            first.stop()
            second.stop()
