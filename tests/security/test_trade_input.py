"""Trade input a real portfolio process must refuse by name instead of failing or misreading:
cursors past the largest trade id, and amounts in anything but plain ASCII decimals.

On SQLite and on PostgreSQL: the overflow happened in each database driver.
"""

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import httpx
import pytest

from devstack.databases import postgres_database, sqlite_database
from devstack.servers import ServerProcess
from shared.assertion import AssertionSigner
from tests.support.stack import PORTFOLIO_APP, fast_identity, stack_env

TRADE = {"symbol": "BTC-USD", "side": "buy", "quantity": "1", "price": "100"}


@dataclass
class Portfolio:
    url: str
    signer: AssertionSigner

    def caller(self) -> dict[str, str]:
        """Headers of a new portfolio user, as the gateway would vouch for them."""
        assertion, _ = self.signer.sign(
            username=f"trader-{uuid.uuid4().hex[:8]}",
            roles=["portfolio"],
            auth_method="api_key",
            service="portfolio",
        )
        return {"X-Identity-Assertion": assertion}


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def portfolio(request, tmp_path_factory) -> Iterator[Portfolio]:
    root = tmp_path_factory.mktemp(f"trade-input-{request.param}")
    with ExitStack() as stack:
        if request.param == "sqlite":
            database_url = stack.enter_context(sqlite_database(root))
        else:
            database_url = stack.enter_context(postgres_database())
        env = stack_env(database_url)
        fast_identity(database_url).close()  # migrates the new database
        process = stack.enter_context(
            ServerProcess(PORTFOLIO_APP, env=env, log_path=root / "portfolio.log")
        )
        yield Portfolio(process.url, AssertionSigner(env["GATEWAY_ASSERTION_PRIVATE_KEY"]))


def refused_field(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    return list(error["fields"])


@pytest.mark.parametrize("cursor", [str(2**63), str(2**63 + 1), "9999999999999999999", str(2**64)])
def test_a_cursor_past_the_largest_trade_id_is_refused_by_name(portfolio, cursor):
    headers = portfolio.caller()
    with httpx.Client(base_url=portfolio.url, headers=headers) as client:
        assert client.post("/trades", json=TRADE).status_code == 201
        response = client.get("/trades", params={"cursor": cursor})
        assert refused_field(response) == ["cursor"]
        # The largest id there can be is still a valid place to start from.
        largest = client.get("/trades", params={"cursor": str(2**63 - 1)})
        assert largest.status_code == 200
        assert len(largest.json()["trades"]) == 1


@pytest.mark.parametrize(
    "amount",
    [
        "\u0661\u0662\u0663",  # Arabic-Indic 123
        "\u0663.\u0665",  # Arabic-Indic 3.5
        "\uff11\uff12",  # full-width 12
        "\u096a",  # Devanagari 4
        "1_000",
        "1e3",
        " 5",
        "5 ",
        "+5",
    ],
)
@pytest.mark.parametrize("field", ["quantity", "price"])
def test_an_amount_in_anything_but_ascii_decimal_digits_is_refused(portfolio, field, amount):
    headers = portfolio.caller()
    with httpx.Client(base_url=portfolio.url, headers=headers) as client:
        response = client.post("/trades", json={**TRADE, field: amount})
        assert refused_field(response) == [field]
        assert client.get("/trades").json()["trades"] == []  # nothing was booked


def test_plain_decimal_amounts_are_booked_exactly(portfolio):
    headers = portfolio.caller()
    with httpx.Client(base_url=portfolio.url, headers=headers) as client:
        response = client.post("/trades", json={**TRADE, "quantity": "0012.50", "price": "3"})
        assert response.status_code == 201, response.text
        assert response.json()["trade"]["quantity"] == "12.5"
