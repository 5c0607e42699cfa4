"""shared.workers: one process claims a server socket; another handed the same one is refused,
until the holder lets go or dies."""

import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import REPO_ROOT
from shared.workers import ListenerTakenError, listening_addresses, lock_path, sole_worker

# A second process handed the socket: tries the claim, says how it went, then holds it
# until its stdin closes.
CLAIMANT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from shared.workers import ListenerTakenError, sole_worker

    try:
        with sole_worker("test", directory=Path(sys.argv[1])) as addresses:
            print("claimed", *addresses, flush=True)
            sys.stdin.read()
    except ListenerTakenError as exc:
        print("refused", exc.address, flush=True)
    """
)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    try:
        yield sock
    finally:
        sock.close()


def address_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


def claimant(sock: socket.socket, directory: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CLAIMANT, str(directory)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        pass_fds=(sock.fileno(),),  # the same socket, under the same number
    )


def first_line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return process.stdout.readline().strip()


def finish(process: subprocess.Popen[str]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    process.wait(timeout=10)


def test_a_bound_socket_counts_and_a_connection_does_not(server: socket.socket):
    server.listen()
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        found = listening_addresses()
        assert address_of(server) in found
        assert address_of(client) not in found
    finally:
        client.close()
        accepted.close()


def test_a_socket_bound_but_not_yet_listening_counts(server: socket.socket):
    # What a uvicorn worker holds during its lifespan: its server listens only afterwards.
    assert address_of(server) in listening_addresses()


def test_a_second_process_on_the_same_socket_is_refused(server: socket.socket, tmp_path: Path):
    with sole_worker("test", directory=tmp_path) as addresses:
        assert address_of(server) in addresses
        other = claimant(server, tmp_path)
        try:
            assert first_line(other) == f"refused {address_of(server)}"
        finally:
            finish(other)


def test_the_socket_is_free_again_once_its_holder_lets_go(server: socket.socket, tmp_path: Path):
    with sole_worker("test", directory=tmp_path):
        assert lock_path("test", address_of(server), tmp_path).exists()
    assert not lock_path("test", address_of(server), tmp_path).exists()
    other = claimant(server, tmp_path)
    try:
        assert first_line(other).startswith("claimed")
    finally:
        finish(other)


def test_a_holder_that_is_killed_frees_the_socket(server: socket.socket, tmp_path: Path):
    holder = claimant(server, tmp_path)
    assert first_line(holder).startswith("claimed")
    with pytest.raises(ListenerTakenError), sole_worker("test", directory=tmp_path):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    # The lock file stays behind; the kernel dropped the lock with the process.
    assert lock_path("test", address_of(server), tmp_path).exists()
    with sole_worker("test", directory=tmp_path) as addresses:
        assert address_of(server) in addresses


def test_claims_inside_one_process_share_the_lock(server: socket.socket, tmp_path: Path):
    path = lock_path("test", address_of(server), tmp_path)
    with sole_worker("test", directory=tmp_path), sole_worker("test", directory=tmp_path):
        assert path.exists()
    assert not path.exists()


def test_other_services_on_the_same_socket_do_not_conflict(server: socket.socket, tmp_path: Path):
    with sole_worker("gateway", directory=tmp_path), sole_worker("portfolio", directory=tmp_path):
        pass


def test_a_symlink_in_place_of_the_lock_file_is_not_followed(server: socket.socket, tmp_path: Path):
    path = lock_path("test", address_of(server), tmp_path)
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError, match="symbolic link"), sole_worker("test", directory=tmp_path):
        pass
    assert not (tmp_path / "elsewhere").exists()
