"""HTTP/1.1 over a raw socket, for tests that decide exactly which bytes a server gets and
when: split heads, pipelining, a body declared but never sent, a body still being sent
when the answer comes."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterable
from typing import Any

TIMEOUT = 30.0


def request(
    path: str = "/",
    *fields: tuple[str, str],
    method: str = "GET",
    body: bytes = b"",
) -> bytes:
    """Return a request's bytes: `Host: test`, then `fields` in order, then `body`."""
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *(f"{n}: {v}" for n, v in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(parts: Iterable[bytes]) -> Iterable[bytes]:
    """Frame `parts` as a chunked body, the last chunk included."""
    for part in parts:
        yield b"%x\r\n%s\r\n" % (len(part), part)
    yield b"0\r\n\r\n"


class Response:
    """A status, lower-cased headers and the body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def code(self) -> str:
        """The error code of a JSON error body."""
        return str(self.json()["error"]["code"])


class Connection:
    """One client connection: send bytes (whole, in pieces, or from a thread), read answers."""

    def __init__(self, url_or_port: str | int) -> None:
        port = url_or_port if isinstance(url_or_port, int) else int(url_or_port.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        self.sender: threading.Thread | None = None
        self.sent = 0

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes, *, piece: int | None = None, pause: float = 0.0) -> None:
        """Send `data`, in pieces of `piece` bytes with `pause` seconds between when asked."""
        step = piece or len(data) or 1
        for start in range(0, len(data), step):
            self.sock.sendall(data[start : start + step])
            self.sent += min(step, len(data) - start)
            if pause:
                time.sleep(pause)

    def send_in_background(self, parts: Iterable[bytes]) -> None:
        """Keep sending `parts` while the test reads: a server may answer before it has all."""

        def push() -> None:
            try:
                for part in parts:
                    self.sock.sendall(part)
                    self.sent += len(part)
            except OSError:
                pass  # the server closed; what it answered is still readable

        self.sender = threading.Thread(target=push, daemon=True)
        self.sender.start()

    def _fill(self) -> bool:
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            return False
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> Response:
        """Read the next response (every answer the tests look at has a Content-Length)."""
        while b"\r\n\r\n" not in self.buffer:
            if not self._fill():
                raise EOFError(f"closed before a full response; got {self.buffer[:200]!r}")
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            if not self._fill():
                raise EOFError("closed in the middle of a body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return Response(int(status_line.split()[1]), headers, body)

    def closed(self) -> bool:
        """Tell whether the server closed the connection after what was read."""
        return not self.buffer and not self._fill()

    def close(self) -> None:
        self.sock.close()
        if self.sender is not None:
            self.sender.join(timeout=TIMEOUT)
