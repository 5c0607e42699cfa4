"""Redis for tests: a key prefix on the shared server, or a private server a test may kill."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from tests.support.servers import free_port

# The shared server every test may use; never stopped by a test.
SHARED_REDIS_URL = "redis://127.0.0.1:6379/0"


def unique_prefix() -> str:
    """Return a key prefix no other test run uses."""
    return f"lct-test:{uuid.uuid4().hex[:12]}:"


def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under `prefix`."""
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)


@contextmanager
def shared_prefix() -> Iterator[str]:
    """Yield a fresh prefix on the shared Redis and delete its keys afterwards."""
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        delete_prefix(SHARED_REDIS_URL, prefix)


class RedisServer:
    """A `redis-server` of our own on a free loopback port, to stop and start at will."""

    def __init__(
        self, directory: Path, port: int | None = None, password: str | None = None
    ) -> None:
        self.port = port or free_port()
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}127.0.0.1:{self.port}/0"
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server (no persistence) and wait until it answers PING."""
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.process = subprocess.Popen(
            [
                executable,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                *(("--requirepass", self.password) if self.password else ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        with redis.Redis(port=self.port, password=self.password, socket_timeout=1.0) as client:
            while True:
                try:
                    if client.ping():
                        return self
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)

    def stop(self) -> None:
        """Kill the server at once (as a crash would) and wait for it to go."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
