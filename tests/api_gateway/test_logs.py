"""The gateway and the portfolio idle together: the identity feed is polled, and only a
failing poll is logged."""

import json
import secrets
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from devstack.servers import ServerProcess
from tests.support.stack import stack_env

pytestmark = pytest.mark.e2e

POLL_SECONDS = 0.2
FEED = "/internal/identity/changes"


def _idle(sqlite_url: str, logs: Path, **gateway_env: str) -> list[dict]:
    """Run both for some twenty polls; return the portfolio's lines written meanwhile."""
    env = stack_env(sqlite_url, GATEWAY_IDENTITY_SYNC_SECONDS=str(POLL_SECONDS))
    with ExitStack() as stack:
        portfolio = stack.enter_context(
            ServerProcess("services.portfolio.app:app", env=env, log_path=logs / "portfolio.log")
        )
        gateway_env = {
            **env,
            "PORTFOLIO_SERVICE_URL": portfolio.url,
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
            **gateway_env,
        }
        stack.enter_context(
            ServerProcess(
                "services.api_gateway.app:app", env=gateway_env, log_path=logs / "gateway.log"
            )
        )
        time.sleep(1.0)
        before = len(_lines(logs / "portfolio.log"))
        time.sleep(20 * POLL_SECONDS)
        written = _lines(logs / "portfolio.log")[before:]
    assert not (logs / "access.log").read_text()
    return written


def test_an_idle_gateway_polling_the_identity_feed_logs_nothing(sqlite_url, tmp_path):
    assert _idle(sqlite_url, tmp_path) == []
    assert not any("changes" in json.dumps(line) for line in _lines(tmp_path / "gateway.log"))


def test_a_failing_poll_is_logged(sqlite_url, tmp_path):
    # The same stack with the gateway holding a token the portfolio does not accept: the
    # polls happen (so the quiet above is not an absence of polls) and each failure shows.
    written = _idle(sqlite_url, tmp_path, IDENTITY_SERVICE_TOKEN=secrets.token_urlsafe(40))
    refused = [line for line in written if line.get("route") == FEED]
    assert len(refused) >= 5, written
    assert {line["status"] for line in refused} == {401}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
