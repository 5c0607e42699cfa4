"""A local AWS endpoint for tests: moto's server in a thread on a free 127.0.0.1 port."""

from __future__ import annotations

from moto.server import ThreadedMotoServer

from devstack.ports import free_port

# Fake credentials for the test environment only; moto accepts any.
FAKE_AWS_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


class MotoServer:
    """moto's AWS API server, started and stopped by the tests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self) -> MotoServer:
        """Serve until `stop()`."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
