"""A stub's log in a real process: JSON only, one line per request, never the query string."""

import json

import httpx
import pytest

from devstack.servers import ServerProcess
from shared.assertion import ASSERTION_HEADER, AssertionSigner
from shared.keys import generate_private_key, load_private_key, public_key_text

pytestmark = pytest.mark.e2e


def test_a_real_stub_logs_one_json_line_per_request(tmp_path):
    private_key = generate_private_key()
    env = {
        "SECRETS_PROVIDER": "env",
        "STUB_SERVICE_NAME": "market",
        "GATEWAY_ASSERTION_PUBLIC_KEY": public_key_text(load_private_key(private_key)),
    }
    assertion, _ = AssertionSigner(private_key, ttl_seconds=60).sign(
        username="logged-user", roles=["market"], auth_method="password", service="market"
    )
    log = tmp_path / "market.log"
    with ServerProcess("services.stub.app:app", env=env, log_path=log) as server:
        for _ in range(3):
            assert httpx.get(server.url + "/healthz").status_code == 200
        echoed = httpx.get(
            server.url + "/quotes/BTC?secret=in-the-query",
            headers={ASSERTION_HEADER: assertion, "X-Request-ID": "req-stub-1"},
        )
        assert echoed.status_code == 200
        refused = httpx.get(server.url + "/quotes/ETH")
        assert refused.status_code == 401
    text = log.read_text()
    assert "in-the-query" not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert {line["service"] for line in lines} == {"market"}
    requests = [line for line in lines if "route" in line]
    # One line each, /healthz left out while it succeeds (no uvicorn access line either).
    assert [(line["method"], line["path"], line["status"]) for line in requests] == [
        ("GET", "/quotes/BTC", 200),
        ("GET", "/quotes/ETH", 401),
    ]
    assert requests[0]["request_id"] == "req-stub-1"
    assert requests[0]["user"] == "logged-user"
