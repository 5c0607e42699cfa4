import ipaddress

import pytest

from services.api_gateway.context import client_address, request_id_from

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"),)


def test_sane_client_request_id_is_kept():
    assert request_id_from(b"abc-123_x.y:z") == "abc-123_x.y:z"


@pytest.mark.parametrize("value", [b"", b"has space", b"x" * 129, b"<script>", "é".encode()])
def test_insane_client_request_id_is_replaced(value):
    replaced = request_id_from(value)
    assert replaced != value.decode("utf-8", "replace")
    assert len(replaced) == 32


def test_missing_request_id_is_generated_fresh_each_time():
    assert request_id_from(None) != request_id_from(None)


def test_forwarded_for_is_ignored_without_trusted_proxies():
    assert client_address("203.0.113.5", b"198.51.100.1", ()) == "203.0.113.5"


def test_forwarded_for_is_ignored_from_an_untrusted_peer():
    assert client_address("203.0.113.5", b"198.51.100.1", TRUSTED) == "203.0.113.5"


def test_forwarded_for_from_a_trusted_peer_gives_the_first_untrusted_hop():
    chain = b"198.51.100.66, 198.51.100.1, 10.0.0.7"
    assert client_address("10.0.0.2", chain, TRUSTED) == "198.51.100.1"


def test_garbage_forwarded_for_falls_back_to_the_peer():
    assert client_address("10.0.0.2", b"not-an-ip", TRUSTED) == "10.0.0.2"
