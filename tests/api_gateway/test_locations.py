"""Location headers of downstream answers, as the caller sees them."""

from urllib.parse import urlsplit

import pytest

from services.api_gateway.locations import public_location

INTERNAL = frozenset({"127.0.0.1", "portfolio", "trading"})


def relayed(location: str, upstream: str = "http://127.0.0.1:8003") -> str | None:
    return public_location(
        location, upstream=urlsplit(upstream), prefix="/api/portfolio", internal_hosts=INTERNAL
    )


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("http://127.0.0.1:8003/trades", "/api/portfolio/trades"),
        ("http://127.0.0.1:8003/trades?limit=5#top", "/api/portfolio/trades?limit=5#top"),
        ("http://127.0.0.1:8003", "/api/portfolio"),
        ("HTTP://127.0.0.1:8003/x", "/api/portfolio/x"),
        ("//127.0.0.1:8003/x", "/api/portfolio/x"),
        ("/trades", "/api/portfolio/trades"),
        ("/\\evil.example/x", "/api/portfolio/\\evil.example/x"),
    ],
)
def test_the_downstreams_own_urls_become_the_gateways_public_path(location, expected):
    assert relayed(location) == expected


@pytest.mark.parametrize(
    "location",
    [
        "http://127.0.0.1:9999/x",  # the same host, another port
        "https://127.0.0.1:8003/x",  # the same host, another scheme
        "http://trading/x",
        "http://localhost:8101/",
        "http://10.1.2.3/v1/secret",
        "http://192.168.0.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8003/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://vault.internal:8200/",
        "http://printer.local/",
        "http://h:99999/",  # no valid port: cannot be judged, dropped
    ],
)
def test_any_other_internal_address_is_dropped(location):
    assert relayed(location) is None


@pytest.mark.parametrize(
    "location",
    ["next", "../trades", "?page=2", "https://example.com/docs", "http://8.8.8.8/", "mailto:a@b.c"],
)
def test_relative_references_and_public_urls_pass_unchanged(location):
    assert relayed(location) == location


def test_an_upstream_with_a_base_path_maps_only_below_it():
    upstream = "http://127.0.0.1:5000/portfolio"
    assert relayed("/portfolio/trades", upstream) == "/api/portfolio/trades"
    assert relayed("http://127.0.0.1:5000/portfolio", upstream) == "/api/portfolio"
    assert relayed("/market/x", upstream) is None
    assert relayed("/portfoliox", upstream) is None
