"""Several gateway workers on one host, as real processes: refused on in-memory state (every
worker would count its own throttles and miss the others' revocations); sharing throttles
and revocations through the real Redis at 127.0.0.1:6379."""

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import REPO_ROOT
from devstack.databases import SHARED_REDIS_URL, shared_prefix
from devstack.launch import GATEWAY_APP, HOST, uvicorn_args, uvicorn_command
from devstack.ports import free_port
from devstack.servers import ServerProcess
from shared.roles import SERVICES
from tests.api_gateway.conftest import PASSWORD

pytestmark = pytest.mark.e2e

MAX_ATTEMPTS = 4
REFUSAL = "gateway cannot start: another gateway worker already serves {address} on in-memory state"
# Nothing to wait for at start-up: the refusal is about the workers, not the identity store.
QUIET = {"GATEWAY_IDENTITY_SYNC_SECONDS": "0", "GATEWAY_STATE_JOURNAL_SECONDS": "0"}


def error_lines(output: str) -> list[str]:
    """The error messages of the workers' JSON log lines (uvicorn's parent writes plain text)."""
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line["message"] for line in lines if line["level"] == "error"]


def test_two_workers_on_in_memory_state_refuse_to_start(keys):
    port = free_port()
    argv = [*uvicorn_command(GATEWAY_APP, host=HOST, port=port), "--workers", "2"]
    done = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        env={**os.environ, **keys.env(), **QUIET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    [refusal] = error_lines(output)
    assert refusal.startswith(REFUSAL.format(address=f"{HOST}:{port}"))
    assert "GATEWAY_STATE_URL=redis://" in refusal
    assert "\n" not in refusal
    # uvicorn's supervisor stops every worker once one failed to start (its own exit status
    # stays 0); nothing is left serving.
    assert "failed to start, stopping the parent process" in output
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{HOST}:{port}/healthz", timeout=2)


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    # uvicorn --fd takes a Unix socket: the case of systemd handing one socket to several
    # single-worker processes.
    path = tmp_path / "gateway.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    try:
        yield sock, path
    finally:
        sock.close()


def fd_command(fd: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        GATEWAY_APP,
        "--fd",
        str(fd),
        *uvicorn_args(GATEWAY_APP),
    ]


def healthy(path: Path) -> bool:
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=1) as client:
            return client.get("http://gateway/healthz").status_code == 200
    except httpx.HTTPError:
        return False


def test_a_second_process_handed_the_same_socket_exits_3(keys, unix_socket, tmp_path: Path):
    sock, path = unix_socket
    env = {**os.environ, **keys.env(), **QUIET}
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(
            fd_command(sock.fileno()),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
        try:
            deadline = time.monotonic() + 30
            while not healthy(path):
                assert first.poll() is None, (tmp_path / "first.log").read_text()
                assert time.monotonic() < deadline, "the first gateway did not start"
                time.sleep(0.1)
            second = subprocess.run(
                fd_command(sock.fileno()),
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
                pass_fds=(sock.fileno(),),
            )
            assert second.returncode == 3  # uvicorn's status for a failed start-up
            output = second.stdout + second.stderr
            assert "Traceback" not in output
            assert error_lines(output)[0].startswith(REFUSAL.format(address=f"unix:{path}"))
            assert healthy(path), "the first gateway keeps serving"
        finally:
            first.terminate()
            first.wait(timeout=15)
    # Its lock went with it: the same socket starts a gateway again.
    with open(tmp_path / "again.log", "wb") as log:
        again = subprocess.Popen(
            fd_command(sock.fileno()),
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
        )
        try:
            deadline = time.monotonic() + 30
            while not healthy(path):
                assert again.poll() is None, (tmp_path / "again.log").read_text()
                assert time.monotonic() < deadline, "the restarted gateway did not start"
                time.sleep(0.1)
        finally:
            again.terminate()
            again.wait(timeout=15)


# Two workers sharing the real Redis. Which worker serves a connection is the kernel's
# choice, so the tests find out (from /proc) and keep one connection open to each.


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def socket_inode(server_port: int, client_port: int) -> str | None:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == (
            client_port
        ):
            return fields[9]
    return None


def serving_worker(workers: list[int], server_port: int, client_port: int) -> int | None:
    inode = socket_inode(server_port, client_port)
    if inode is None:
        return None
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


class Connection:
    """One kept-alive HTTP/1.1 connection, so every request reaches the same worker."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection(HOST, port, timeout=10)
        self.http.connect()
        assert self.http.sock is not None
        self.local_port: int = self.http.sock.getsockname()[1]

    def request(
        self, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})}
        self.http.request(method, path, body=data, headers=sent)
        response = self.http.getresponse()
        raw = response.read()
        return response.status, (json.loads(raw) if raw else {})

    def login(self, username: str, password: str = PASSWORD) -> tuple[int, Any]:
        return self.request("POST", "/auth/token", {"username": username, "password": password})

    def close(self) -> None:
        self.http.close()


@pytest.fixture(scope="module")
def two_workers(keys, portfolio, upstream, tmp_path_factory) -> Iterator[ServerProcess]:
    logs = tmp_path_factory.mktemp("workers")
    with shared_prefix() as prefix:
        env = {
            **keys.env(),
            "GATEWAY_STATE_URL": SHARED_REDIS_URL,
            "GATEWAY_STATE_PREFIX": prefix,
            "GATEWAY_LOGIN_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
            **{
                f"{service.value.upper()}_SERVICE_URL": f"{upstream}/{service.value}"
                for service in SERVICES
            },
            "PORTFOLIO_SERVICE_URL": portfolio.url,
        }
        with ServerProcess(
            GATEWAY_APP, env=env, log_path=logs / "gateway.log", extra_args=("--workers", "2")
        ) as server:
            assert server.process is not None
            deadline = time.monotonic() + 30
            while len(children(server.process.pid)) < 2 or not all(
                healthy_tcp(server.port) for _ in range(4)
            ):
                assert time.monotonic() < deadline, "two workers did not start"
                time.sleep(0.2)
            yield server


def healthy_tcp(port: int) -> bool:
    try:
        return httpx.get(f"http://{HOST}:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def one_per_worker(two_workers: ServerProcess) -> Iterator[tuple[Connection, Connection]]:
    """A connection served by each of the two workers."""
    assert two_workers.process is not None
    workers = children(two_workers.process.pid)
    by_worker: dict[int, Connection] = {}
    spare: list[Connection] = []
    try:
        for _ in range(100):
            connection = Connection(two_workers.port)
            assert connection.request("GET", "/healthz")[0] == 200  # accepted by now
            pid = serving_worker(workers, two_workers.port, connection.local_port)
            if pid is not None and pid not in by_worker:
                by_worker[pid] = connection
            else:
                spare.append(connection)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, f"every connection went to one worker: {by_worker}"
        first, second = by_worker.values()
        yield first, second
    finally:
        for connection in [*by_worker.values(), *spare]:
            connection.close()


def test_a_token_revoked_through_one_worker_is_refused_by_the_other(one_per_worker, portfolio):
    one, two = one_per_worker
    name, _ = portfolio.user("trading")
    status, body = one.login(name)
    assert status == 200, body
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert two.request("GET", "/auth/me", headers=headers)[0] == 200
    assert one.request("POST", "/auth/logout", headers=headers)[0] == 204
    for connection in (two, one):
        status, refused = connection.request("GET", "/auth/me", headers=headers)
        assert status == 401
        assert refused["error"]["code"] == "invalid_token"


def test_failed_logins_count_once_across_workers(one_per_worker, portfolio):
    one, two = one_per_worker
    name, _ = portfolio.user("trading")
    statuses = [
        (one, two)[attempt % 2].login(name, "wrong password")[0]
        for attempt in range(2 * MAX_ATTEMPTS)
    ]
    # On separate memories each worker would let MAX_ATTEMPTS through: 8 times 401.
    assert statuses == [401] * MAX_ATTEMPTS + [429] * MAX_ATTEMPTS
    for connection in (one, two):
        status, refused = connection.login(name)
        assert status == 429
        assert refused["error"]["code"] == "too_many_attempts"
