import ipaddress

import pytest
from pydantic import ValidationError

from services.api_gateway.config import Settings, load_settings
from services.api_gateway.errors import StartupError
from shared.roles import SERVICES, Service


def test_defaults_point_at_the_local_ports(monkeypatch):
    for name in [f"{s.value.upper()}_SERVICE_URL" for s in SERVICES]:
        monkeypatch.delenv(name, raising=False)
    for name in ("GATEWAY_TOKEN_TTL_SECONDS", "GATEWAY_TRUSTED_PROXIES", "GATEWAY_ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.gateway_token_ttl_seconds == 900
    assert settings.service_url(Service.PORTFOLIO) == "http://127.0.0.1:8003"
    assert [settings.service_url(s) for s in SERVICES[1:]] == [
        f"http://127.0.0.1:{port}" for port in range(8101, 8107)
    ]
    assert settings.gateway_trusted_proxies == ()
    assert settings.gateway_access_log == "stdout"


def test_trusted_proxies_are_read_as_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("GATEWAY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.7")
    assert Settings().gateway_trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
    )


def test_service_url_must_be_http():
    with pytest.raises(ValidationError, match="http"):
        Settings(trading_service_url="ftp://example")


def test_bad_environment_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv("GATEWAY_TOKEN_TTL_SECONDS", "soon")
    with pytest.raises(StartupError) as exc:
        load_settings()
    assert "GATEWAY_TOKEN_TTL_SECONDS" in str(exc.value)
    assert "\n" not in str(exc.value)
