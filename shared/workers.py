"""One worker per listening socket, for a service that keeps limits in its own memory.

State held in a process (login throttles, revocations) is only right while one process
holds it: `uvicorn --workers N`, gunicorn, or systemd handing one socket to several
processes would give each worker its own copy, so every limit counts N times and a
revocation reaches one worker in N. The workers of one server share what tells them apart
from independent servers: the listening socket their supervisor bound and handed to each.
So a starting process claims every server socket it already holds (bound, listening or
not yet) with an exclusive `flock` on a lock file named after the socket's address, and a
second claimant is refused.

The kernel drops the lock when its process dies, however it dies, so a restart is never
refused by a lock left behind. A process that binds its socket itself (uvicorn with one
worker binds after the lifespan has started) holds none yet and claims nothing; a second
such process could not bind the same address anyway. Several claims of one address inside
one process (in-process test apps) share the lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class ListenerTakenError(Exception):
    """Another process already serves this listening socket as the sole worker."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


@dataclass(slots=True)
class _Claim:
    fd: int
    holders: int


_CLAIMS: dict[Path, _Claim] = {}
_CLAIMS_LOCK = threading.Lock()


def _open_fds() -> list[int]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            return sorted(int(name) for name in os.listdir(folder) if name.isdigit())
    return []


_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


def _describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        path = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
        return f"unix:{path}"
    host, port = name[0], name[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listening_addresses() -> list[str]:
    """Return the address of every server socket (listening, or bound to listen) this
    process holds, sorted."""
    addresses = set()
    for fd in _open_fds():
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            # A duplicate: closing the probe must leave the process's own socket open.
            probe = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        with probe:
            address = _server_address(probe)
            if address is not None:
                addresses.add(address)
    return sorted(addresses)


def _server_address(sock: socket.socket) -> str | None:
    # A supervisor binds the socket and each worker's server starts listening on it only
    # after the lifespan: a bound stream socket with no peer counts, listening or not.
    if sock.type != socket.SOCK_STREAM or sock.family not in _FAMILIES:
        return None
    try:
        sock.getpeername()
    except OSError:
        pass
    else:
        return None  # a connection, not a server socket
    try:
        address = _describe(sock)
    except OSError:
        return None
    return None if address.endswith((":0", "unix:")) else address


def lock_directory() -> Path:
    """Where the lock files live: the user's runtime directory, else the temp directory."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime)
    return Path(tempfile.gettempdir())


def lock_path(service: str, address: str, directory: Path | None = None) -> Path:
    """Return the lock file of one service on one listening address."""
    digest = hashlib.sha256(address.encode()).hexdigest()[:20]
    return (directory or lock_directory()) / f"lct-{service}-{os.getuid()}-{digest}.lock"


def _lock(path: Path, address: str) -> int:
    while True:
        # No symlink followed, and only a file of this user: a shared temp directory must
        # not let anyone else hold (or point) the lock.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_uid != os.getuid():
                raise PermissionError(errno.EACCES, "lock file owned by another user", str(path))
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ListenerTakenError(address) from None
        except BaseException:
            os.close(fd)
            raise
        # A holder removes the file as it lets go: a lock taken on the file it removed
        # (opened just before) guards nothing, so open the path again.
        try:
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)


def _release(path: Path) -> None:
    with _CLAIMS_LOCK:
        claim = _CLAIMS[path]
        claim.holders -= 1
        if claim.holders:
            return
        del _CLAIMS[path]
        # Removed while still locked, so nobody can lock this file after it is gone.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(claim.fd)


@contextlib.contextmanager
def sole_worker(service: str, *, directory: Path | None = None) -> Iterator[list[str]]:
    """Hold every listening socket of this process as `service`'s only worker while the
    block runs; raise `ListenerTakenError` if another process already holds one of them.
    Yield the addresses claimed (none when the process has not bound its socket yet)."""
    claimed: list[Path] = []
    addresses = listening_addresses()
    try:
        for address in addresses:
            path = lock_path(service, address, directory)
            with _CLAIMS_LOCK:
                claim = _CLAIMS.get(path)
                if claim is None:
                    claim = _CLAIMS[path] = _Claim(fd=_lock(path, address), holders=0)
                claim.holders += 1
            claimed.append(path)
        yield addresses
    finally:
        for path in claimed:
            _release(path)
