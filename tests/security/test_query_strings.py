"""Credentials in a query string: the gateway refuses them and forwards none, and no process
prints a query string in its logs, however it was launched."""

import base64
import contextlib
import os
import secrets
import shlex
import sys
from contextlib import ExitStack

import httpx
import pytest

from devstack.environment import stack_environment
from devstack.ports import free_port
from devstack.processes import PROCESSES
from devstack.servers import ServerProcess
from tests.security.conftest import PASSWORD
from tests.support.launches import launch_commands

QUERIES = [
    "api_key={}",
    "access_token={}",
    "token={}",
    "password={}",
    "limit=5&API_KEY={}",
    "Access-Token={}",
    "%70assword={}",
    "x=1;token={}",
    "client_secret={}",
    "api_key[]={}",
]


def answer(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize(
    "path", ["/api/trading/orders", "/api/portfolio/positions", "/auth/me", "/healthz"]
)
def test_the_gateway_refuses_a_credential_in_the_query_string(stack, path, query):
    _, key = stack.user("trading", "portfolio", api_key=True)
    assert key is not None
    with httpx.Client(base_url=stack.gateway_url) as client:
        for headers in ({"X-API-Key": key}, {}):
            response = client.get(f"{path}?{query.format(key)}", headers=headers)
            assert answer(response) == (400, "credentials_in_query"), response.text
            assert key not in response.text


def test_a_refused_query_string_never_reaches_the_service(stack):
    _, key = stack.user("trading", api_key=True)
    with httpx.Client(base_url=stack.gateway_url, headers={"X-API-Key": key}) as client:
        # The stub echoes whatever reaches it; the refusal is the gateway's own answer.
        assert client.get("/api/trading/orders?limit=5").json()["service"] == "trading"
        refused = client.post("/api/trading/orders?limit=5&password=hunter2", json={})
    assert answer(refused) == (400, "credentials_in_query")
    assert "service" not in refused.json()


def test_ordinary_query_parameters_are_still_forwarded(stack):
    name, _ = stack.user("portfolio")
    token = httpx.post(
        stack.gateway_url + "/auth/token",
        json={"username": name, "password": PASSWORD},
    ).json()["access_token"]
    response = httpx.get(
        stack.gateway_url + "/api/portfolio/trades?limit=5&symbol=BTC-USD&key_order=1",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text


# --- what the processes print --------------------------------------------------------------


@pytest.mark.parametrize("where", list(launch_commands()))
def test_every_launch_command_turns_off_uvicorns_request_lines(where):
    command = launch_commands()[where]
    assert "uvicorn" in command, where
    # The access log prints each request line, query string included; the WebSocket
    # handshake log (on whenever a WebSocket library is installed) prints it too.
    assert "--no-access-log" in command, where
    assert "--access-log" not in command, where
    assert "--ws" in command, where
    assert command[command.index("--ws") + 1] == "none", where


LAUNCHED = ("portfolio", "gateway", "frontend", "trading")


def websocket_handshake(client: httpx.Client, url: str) -> None:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
    }
    # Whatever the answer: only what the server printed matters.
    with contextlib.suppress(httpx.HTTPError):
        client.get(url, headers=headers)


def test_no_process_prints_a_query_string_however_launched(stack, tmp_path):
    ports = {process.name: free_port() for process in PROCESSES}
    env = stack_environment({**stack.env, "GATEWAY_ACCESS_LOG": "stdout"}, ports)
    marks: list[str] = []

    def mark() -> str:
        marks.append("qs" + secrets.token_hex(12))
        return marks[-1]

    with ExitStack() as processes:
        urls = {}
        for process in PROCESSES:
            if process.name not in LAUNCHED:
                continue
            argv = shlex.split(process.command(ports[process.name], python=sys.executable))
            started = processes.enter_context(
                ServerProcess(
                    process.app,
                    env=env,
                    port=ports[process.name],
                    log_path=tmp_path / f"{process.name}.log",
                    command=argv[1:] if argv[0] == "exec" else argv,
                )
            )
            urls[process.name] = started.url
        name, key = stack.user("trading", "portfolio", api_key=True)
        with httpx.Client(timeout=10) as client:
            gateway, auth = urls["gateway"], {"X-API-Key": key or ""}
            client.get(f"{gateway}/api/trading/orders?api_key={mark()}", headers=auth)
            client.get(f"{gateway}/api/trading/orders?note={mark()}", headers=auth)
            client.get(f"{gateway}/api/portfolio/positions?access_token={mark()}")
            client.get(f"{gateway}/auth/me?token={mark()}", headers=auth)
            client.post(f"{gateway}/auth/token?password={mark()}", json={"username": name})
            client.get(f"{gateway}/no/such/path?password={mark()}")
            client.get(f"{urls['portfolio']}/positions?access_token={mark()}")
            client.get(f"{urls['portfolio']}/healthz?password={mark()}")
            client.get(f"{urls['trading']}/orders?api_key={mark()}")
            client.get(f"{urls['frontend']}/login?password={mark()}")
            client.get(f"{urls['frontend']}/dashboard?token={mark()}")
            for url in urls.values():
                websocket_handshake(client, f"{url}/ws?access_token={mark()}")
    # The processes have stopped: every log is complete.
    logs = {path.name: path.read_text(errors="replace") for path in tmp_path.glob("*.log")}
    assert set(logs) == {f"{name}.log" for name in LAUNCHED}
    # The gateway's own JSON access log is on (stdout) and records paths without queries.
    assert '"path":"/auth/me"' in logs["gateway.log"]
    for log, text in logs.items():
        for value in marks:
            assert value not in text, f"a query string value is in {log}"
