"""The real processes: identity service on PostgreSQL, gateway, two stub services."""

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from devstack.servers import ServerProcess
from shared.assertion import ASSERTION_HEADER, IDENTITY_HEADERS
from tests.api_gateway.conftest import PASSWORD

pytestmark = pytest.mark.e2e

STUBS = ("trading", "market")


@dataclass
class Stack:
    gateway: str
    stubs: dict[str, str]


@pytest.fixture(scope="module")
def stack(keys, portfolio, tmp_path_factory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e")
    stubs = [
        ServerProcess(
            "services.stub.app:app",
            env={**keys.env(), "STUB_SERVICE_NAME": name},
            log_path=logs / f"{name}.log",
        )
        for name in STUBS
    ]
    try:
        for stub in stubs:
            stub.start()
        env = {
            **keys.env(),
            "PORTFOLIO_SERVICE_URL": portfolio.url,
            **{
                f"{name.upper()}_SERVICE_URL": stub.url
                for name, stub in zip(STUBS, stubs, strict=True)
            },
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
        }
        with ServerProcess(
            "services.api_gateway.app:app", env=env, log_path=logs / "gateway.log"
        ) as gateway:
            yield Stack(
                gateway.url, {name: stub.url for name, stub in zip(STUBS, stubs, strict=True)}
            )
    finally:
        for stub in stubs:
            stub.stop()


def test_login_through_the_gateway_reaches_the_stub_as_the_verified_user(stack, portfolio):
    name, key = portfolio.user("trading", api_key=True)
    with httpx.Client(base_url=stack.gateway) as client:
        token = client.post("/auth/token", json={"username": name, "password": PASSWORD}).json()
        for headers, method in (
            ({"Authorization": f"Bearer {token['access_token']}"}, "POST"),
            ({"X-API-Key": key}, "GET"),
        ):
            response = client.request(
                method, "/api/trading/orders/7", headers={**headers, "X-Request-ID": "e2e-1"}
            )
            assert response.status_code == 200
            assert response.json() == {
                "service": "trading",
                "method": method,
                "path": "/orders/7",
                "user": name,
                "roles": ["trading"],
                "request_id": "e2e-1",
            }
        assert client.get("/api/market/x", headers={"X-API-Key": key}).status_code == 403


def test_spoofed_identity_headers_never_reach_a_stub(stack, portfolio):
    name, key = portfolio.user("market", api_key=True)
    spoofed = {header: "admin" for header in IDENTITY_HEADERS if header != ASSERTION_HEADER}
    with httpx.Client(base_url=stack.gateway) as client:
        response = client.get(
            "/api/market/prices",
            headers={**spoofed, ASSERTION_HEADER: "forged", "X-API-Key": key},
        )
    assert response.status_code == 200
    assert (response.json()["user"], response.json()["roles"]) == (name, ["market"])


@pytest.mark.parametrize("service", STUBS)
def test_a_stub_called_directly_without_an_assertion_refuses(stack, service):
    response = httpx.get(stack.stubs[service] + "/orders", headers={"X-User": "admin"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"


def test_gateway_is_ready_when_the_identity_service_is(stack):
    assert httpx.get(stack.gateway + "/readyz").status_code == 200
