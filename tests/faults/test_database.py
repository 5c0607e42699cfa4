"""The database down mid-run: the identity and portfolio APIs answer 503 JSON in bounded
time, come back by themselves when it returns, and every stored row is still there."""

import uuid

import pytest

from tests.faults.conftest import PASSWORD

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


def book(client, headers, quantity: str, key: str):
    return client.post(
        "/api/portfolio/trades",
        headers={**headers, "Idempotency-Key": key},
        json={"symbol": "BTC-USD", "side": "buy", "quantity": quantity, "price": "100"},
    )


def test_database_offline_and_back(faults):
    name, _ = faults.user("portfolio", "trading")
    headers = faults.login(name)
    with faults.client() as client:
        first = book(client, headers, "1.5", uuid.uuid4().hex)
        assert first.status_code == 201, first.text
        faults.set_database_online(False)
        try:
            login = client.post("/auth/token", json={"username": name, "password": PASSWORD})
            assert login.status_code in (502, 503)
            assert login.json()["error"]["code"] in ("upstream_unavailable", "service_unavailable")
            positions = client.get("/api/portfolio/positions", headers=headers)
            assert positions.status_code == 503
            assert positions.json()["error"]["code"] == "service_unavailable"
            lost_key = uuid.uuid4().hex
            refused = book(client, headers, "2", lost_key)
            assert refused.status_code == 503
            assert client.get("/readyz").status_code == 503
        finally:
            faults.set_database_online(True)
        assert client.get("/readyz").status_code == 200
        assert (
            client.post("/auth/token", json={"username": name, "password": PASSWORD}).status_code
            == 200
        )
        # The refused trade was not half-written: booking it now books it once.
        assert book(client, headers, "2", lost_key).status_code == 201
        [position] = client.get("/api/portfolio/positions", headers=headers).json()["positions"]
        assert position["quantity"].rstrip("0").rstrip(".") == "3.5"
        trades = client.get("/api/portfolio/trades", headers=headers).json()["trades"]
        assert len(trades) == 2
