"""Redirects never send a caller where a Host header says, nor to a downstream's address."""

from collections.abc import Iterator

import httpx
import pytest

from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess

EVIL = "evil.example"


@pytest.fixture(scope="module")
def frontend_url(stack) -> Iterator[str]:
    env = {**stack.env, "GATEWAY_URL": stack.gateway_url}
    log = stack.logs / "frontend.log"
    with ServerProcess("services.frontend.app:app", env=env, log_path=log) as process:
        yield process.url


@pytest.mark.parametrize(
    ("path", "location"),
    [("/auth/me/", "/auth/me"), ("/admin/users/?limit=5", "/admin/users?limit=5")],
)
def test_the_gateways_slash_redirect_never_names_the_host_header(stack, path, location):
    response = httpx.get(stack.gateway_url + path, headers={"Host": EVIL})
    assert response.status_code == 307
    assert response.headers["location"] == location


@pytest.mark.parametrize(
    ("path", "location"), [("/login/", "/login"), ("/dashboard/?tab=1", "/dashboard?tab=1")]
)
def test_the_frontends_slash_redirect_never_names_the_host_header(frontend_url, path, location):
    response = httpx.get(frontend_url + path, headers={"Host": EVIL})
    assert response.status_code == 307
    assert response.headers["location"] == location


def test_a_redirect_of_the_portfolio_service_points_at_the_gateway_not_at_the_service(stack):
    _, key = stack.user("portfolio", api_key=True)
    response = httpx.get(
        stack.gateway_url + "/api/portfolio/trades/?limit=5",
        headers={"X-API-Key": key or "", "Host": EVIL},
    )
    assert response.status_code == 307
    assert response.headers["location"] == "/api/portfolio/trades?limit=5"


@pytest.fixture(scope="module")
def redirecting(stack) -> Iterator[tuple[str, str]]:
    """A gateway whose trading service redirects wherever `?to=` says; (gateway, upstream)."""
    env = {"TEST_ASSERTION_PUBLIC_KEY": stack.env["GATEWAY_ASSERTION_PUBLIC_KEY"]}
    with ServerProcess(
        "tests.api_gateway.upstream:app", env=env, log_path=stack.logs / "upstream.log"
    ) as upstream:
        gateway_env = {**stack.env, "TRADING_SERVICE_URL": f"{upstream.url}/trading"}
        log = stack.logs / "gateway-redirecting.log"
        with ServerProcess(GATEWAY_APP, env=gateway_env, log_path=log) as gateway:
            yield gateway.url, upstream.url


@pytest.mark.parametrize(
    ("location", "relayed"),
    [
        ("{upstream}/trading/next?page=2", "/api/trading/next?page=2"),
        ("/trading/next", "/api/trading/next"),
        ("next", "next"),
        ("https://example.com/docs", "https://example.com/docs"),
        ("{upstream}/market/x", None),
        ("{portfolio}/internal/identity/users", None),
        ("http://10.20.30.40:8200/v1/secret", None),
        ("http://localhost:8101/", None),
        ("http://vault:8200/v1/sys", None),
        ("http://[::1]:8003/", None),
    ],
)
def test_a_downstream_location_is_rewritten_to_the_gateway_or_dropped(
    stack, redirecting, location, relayed
):
    gateway, upstream = redirecting
    _, key = stack.user("trading", api_key=True)
    target = location.format(upstream=upstream, portfolio=stack.portfolio_url)
    response = httpx.get(
        gateway + "/api/trading/redirect",
        params={"to": target},
        headers={"X-API-Key": key or ""},
    )
    assert response.status_code == 302
    assert response.headers.get("location") == relayed
