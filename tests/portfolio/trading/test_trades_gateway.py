"""The portfolio REST API behind the real gateway: `/api/portfolio/<path>`, tokens and API keys."""

import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from devstack.databases import postgres_database
from devstack.servers import ServerProcess
from services.portfolio.identity import PortfolioIdentityService
from tests.portfolio.conftest import PASSWORD, make_settings
from tests.support.stack import stack_env

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@dataclass(frozen=True)
class Gateway:
    url: str
    token: str  # a bearer token of `trader`
    api_key: str  # `trader`'s API key
    outsider_token: str  # a bearer token of a user with only the trading role


def _login(url: str, username: str) -> str:
    response = httpx.post(url + "/auth/token", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    logs = tmp_path_factory.mktemp("portfolio-gateway")
    with ExitStack() as stack:
        env = stack_env(stack.enter_context(postgres_database()))
        with PortfolioIdentityService(settings=make_settings(env["PORTFOLIO_DATABASE_URL"])) as ids:
            ids.create_user("trader", PASSWORD, roles=["portfolio"])
            ids.create_user("outsider", PASSWORD, roles=["trading"])
            api_key = ids.rotate_api_key("trader", secrets.token_hex(32)).api_key
        portfolio = stack.enter_context(
            ServerProcess("services.portfolio.app:app", env=env, log_path=logs / "portfolio.log")
        )
        env["PORTFOLIO_SERVICE_URL"] = portfolio.url
        server = stack.enter_context(
            ServerProcess("services.api_gateway.app:app", env=env, log_path=logs / "gateway.log")
        )
        yield Gateway(
            url=server.url,
            token=_login(server.url, "trader"),
            api_key=api_key,
            outsider_token=_login(server.url, "outsider"),
        )


def test_a_trade_booked_with_a_token_is_replayed_and_seen_with_the_api_key(gateway):
    bearer = {"Authorization": f"Bearer {gateway.token}", "Idempotency-Key": "gw-1"}
    body = {"symbol": "BTC-USD", "side": "buy", "quantity": "0.25", "price": "64000.5"}
    with httpx.Client(base_url=gateway.url + "/api/portfolio") as client:
        first = client.post("/trades", json=body, headers=bearer)
        again = client.post("/trades", json=body, headers=bearer)
        by_key = client.get("/positions/BTC-USD", headers={"X-API-Key": gateway.api_key})
        summary = client.get("/summary", headers={"X-API-Key": gateway.api_key})
    assert (first.status_code, again.status_code) == (201, 200), first.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["trade"]["id"] == first.json()["trade"]["id"]
    assert by_key.status_code == 200
    assert by_key.json()["position"]["quantity"] == "0.25"
    assert summary.json()["totals"][0]["cost_basis"] == "16000.125"


def test_a_user_without_the_portfolio_role_is_stopped_at_the_gateway(gateway):
    response = httpx.get(
        gateway.url + "/api/portfolio/positions",
        headers={"Authorization": f"Bearer {gateway.outsider_token}"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_an_anonymous_caller_never_reaches_the_portfolio(gateway):
    response = httpx.post(
        gateway.url + "/api/portfolio/trades",
        json={"symbol": "BTC-USD", "side": "buy", "quantity": "1", "price": "1"},
        headers={"X-User": "trader"},
    )
    assert response.status_code == 401
