"""The processes under test: identity service, stub upstream, nginx, the gateway, and the
same gateway with its metrics taken out (`bench.unmetered`)."""

from __future__ import annotations

import secrets
import shutil
import subprocess  # nosec B404 - runs nginx with a fixed argv
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devstack.ports import free_port
from devstack.servers import ServerProcess
from shared.metrics import SCRAPE_TOKEN_SECRET
from shared.secrets.generate import generate_secrets

USERNAME = "bench-user"
PASSWORD = "bench password that is long enough"  # noqa: S105  # nosec B105 - throwaway account
# ServerProcess already launches with the flags of devstack.launch (the httptools-based
# protocol that caps the request head); these add the faster event loop.
FAST_SERVER = ("--loop", "uvloop")

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    upstream stub {{
        server 127.0.0.1:{stub_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://stub;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@dataclass(frozen=True)
class Stack:
    """Where everything listens, and the credentials to drive it with."""

    stub_url: str
    nginx_url: str
    gateway_url: str
    gateway_pid: int
    unmetered_gateway_url: str
    unmetered_gateway_pid: int
    nginx_pid: int
    access_token: str
    api_key: str
    assertion_private_key: str
    metrics_scrape_token: str


@dataclass(frozen=True)
class Upstreams:
    """The identity service and the trading stub, running, and what a gateway needs of them."""

    env: dict[str, str]
    stub: ServerProcess
    api_key: str


def service_env(database_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of every process: fresh keys and service token (env secrets
    provider), the identity store at `database_url`, no password expiry, then `extra`."""
    return {
        "SECRETS_PROVIDER": "env",
        **generate_secrets(),
        "PORTFOLIO_DATABASE_URL": database_url,
        "PORTFOLIO_PASSWORD_ROTATION_DAYS": "0",  # nosec B105 - a number of days
        **extra,
    }


def find_nginx() -> str:
    """Return the nginx executable (Debian package `nginx`)."""
    path = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if path is None:
        raise SystemExit("nginx is not installed; `make services` installs it (Debian nginx)")
    return path


@contextmanager
def nginx(root: Path, stub_port: int) -> Iterator[tuple[str, int]]:
    """Run nginx in the foreground as a keep-alive reverse proxy to the stub; yield its URL
    and the pid of its master process (its one worker is a child)."""
    port = free_port()
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, stub_port=stub_port))
    process = subprocess.Popen(  # noqa: S603  # nosec B603 - fixed argv, our temp paths
        [find_nginx(), "-p", str(root), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited; see {root / 'nginx-error.log'}")
            try:
                httpx.get(url + "/healthz", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start listening") from None
                time.sleep(0.1)
        yield url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def upstreams(root: Path, **extra_env: str) -> Iterator[Upstreams]:
    """Create the bench user and an API key of theirs in a fresh SQLite identity store under
    `root`, start the identity service and the trading stub, and yield the environment of a
    gateway in front of them (`service_env` with `extra_env`, plus the upstreams' URLs)."""
    from services.portfolio.identity import PortfolioIdentityService

    database_url = f"sqlite+aiosqlite:///{root / 'portfolio.db'}"
    env = service_env(database_url, **extra_env)
    with PortfolioIdentityService(database_url=database_url) as identity:
        identity.create_user(USERNAME, PASSWORD, roles=["trading"])
        api_key = identity.rotate_api_key(USERNAME, secrets.token_hex(32)).api_key

    with ExitStack() as stack:
        portfolio = stack.enter_context(
            ServerProcess("services.portfolio.app:app", env=env, log_path=root / "portfolio.log")
        )
        stub = stack.enter_context(
            ServerProcess(
                "services.stub.app:app",
                env={**env, "STUB_SERVICE_NAME": "trading"},
                log_path=root / "stub.log",
                extra_args=FAST_SERVER,
            )
        )
        yield Upstreams(
            env={**env, "PORTFOLIO_SERVICE_URL": portfolio.url, "TRADING_SERVICE_URL": stub.url},
            stub=stub,
            api_key=api_key,
        )


@contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    """Start the identity service, the stub, nginx and the gateway; yield how to reach them."""
    with upstreams(root) as up, ExitStack() as stack:
        nginx_url, nginx_pid = stack.enter_context(nginx(root / "nginx", up.stub.port))
        gateway, unmetered = (
            stack.enter_context(
                ServerProcess(
                    app,
                    env={**up.env, "GATEWAY_ACCESS_LOG": str(root / f"{name}-access.log")},
                    log_path=root / f"{name}.log",
                    extra_args=FAST_SERVER,
                )
            )
            for name, app in (
                ("gateway", "services.api_gateway.app:app"),
                ("unmetered-gateway", "bench.unmetered:app"),
            )
        )
        login = httpx.post(
            gateway.url + "/auth/token", json={"username": USERNAME, "password": PASSWORD}
        )
        login.raise_for_status()
        if gateway.process is None or unmetered.process is None:
            raise RuntimeError("a gateway process did not start")
        yield Stack(
            stub_url=up.stub.url,
            nginx_url=nginx_url,
            gateway_url=gateway.url,
            gateway_pid=gateway.process.pid,
            unmetered_gateway_url=unmetered.url,
            unmetered_gateway_pid=unmetered.process.pid,
            nginx_pid=nginx_pid,
            access_token=login.json()["access_token"],
            api_key=up.api_key,
            assertion_private_key=up.env["GATEWAY_ASSERTION_PRIVATE_KEY"],
            metrics_scrape_token=up.env[SCRAPE_TOKEN_SECRET],
        )
