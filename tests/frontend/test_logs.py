"""The frontend's log in a real process: JSON only, one line per request, never the query."""

import json

import httpx
import pytest

from devstack.ports import free_port
from devstack.servers import ServerProcess

pytestmark = pytest.mark.e2e


def test_a_real_frontend_logs_one_json_line_per_request(tmp_path):
    env = {
        "SECRETS_PROVIDER": "env",
        "FRONTEND_SESSION_SECRET": "f" * 48,
        # Nothing listens there: the login page renders without the gateway.
        "GATEWAY_URL": f"http://127.0.0.1:{free_port()}",
    }
    log = tmp_path / "frontend.log"
    with ServerProcess("services.frontend.app:app", env=env, log_path=log) as server:
        for _ in range(3):
            assert httpx.get(server.url + "/healthz").status_code == 200
        page = httpx.get(
            server.url + "/login?next=/dashboard&secret=in-the-query",
            headers={"X-Request-ID": "req-frontend-1"},
        )
        assert page.status_code == 200
        assert page.headers["X-Request-ID"] == "req-frontend-1"
    text = log.read_text()
    assert "in-the-query" not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert {line["service"] for line in lines} == {"frontend"}
    requests = [line for line in lines if "route" in line]
    # One line for the page, none for /healthz while it succeeds, no uvicorn access line.
    assert [(line["method"], line["route"], line["status"]) for line in requests] == [
        ("GET", "/login", 200)
    ]
    assert requests[0]["request_id"] == "req-frontend-1"
    assert requests[0]["path"] == "/login"
    assert requests[0]["user"] is None
