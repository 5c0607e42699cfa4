"""The portfolio's log in a real process: JSON only, one line per request, quiet when idle."""

import json

import httpx
import pytest

from devstack.servers import ServerProcess
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY
from tests.portfolio.conftest import CHEAP_ARGON2_ENV
from tests.portfolio.http import SERVICE_TOKEN

pytestmark = pytest.mark.e2e


def test_a_real_process_logs_json_lines_and_not_the_identity_feeds_polls(sqlite_url, tmp_path):
    env = {
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
        "SECRETS_PROVIDER": "env",
        **CHEAP_ARGON2_ENV,
    }
    log = tmp_path / "portfolio.log"
    headers = {"X-Service-Token": SERVICE_TOKEN}
    with ServerProcess("services.portfolio.app:app", env=env, log_path=log) as server:
        for _ in range(5):
            polled = httpx.get(server.url + "/internal/identity/changes", headers=headers)
            assert polled.status_code == 200
        listed = httpx.get(
            server.url + "/internal/identity/users?secret=in-the-query",
            headers={**headers, "X-Request-ID": "req-42"},
        )
        assert listed.headers["X-Request-ID"] == "req-42"
    text = log.read_text()
    assert "in-the-query" not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert {line["service"] for line in lines} == {"portfolio"}
    requests = [line for line in lines if "route" in line]
    assert [(line["method"], line["route"], line["status"]) for line in requests] == [
        ("GET", "/internal/identity/users", 200)
    ]
    assert requests[0]["request_id"] == "req-42"
    assert requests[0]["path"] == "/internal/identity/users"
