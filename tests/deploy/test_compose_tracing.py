"""docker/compose.tracing.yml, layered over docker-compose.yml: Jaeger all-in-one takes
every app service's traces. Checked by structure, as compose would merge the two files."""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from devstack import REPO_ROOT
from shared.tracing import tracing_requested
from tests.deploy.test_compose import APP_SERVICES, COMPOSE_FILE, environment_of

TRACING_FILE = REPO_ROOT / "docker" / "compose.tracing.yml"
COLLECTOR = "jaeger"
OTLP_HTTP_PORT = 4318


@pytest.fixture(scope="module")
def main() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def layer() -> dict[str, Any]:
    return yaml.safe_load(TRACING_FILE.read_text())


def networks_of(service: dict[str, Any]) -> set[str]:
    networks = service.get("networks") or ["default"]
    return set(networks)


def test_it_adds_the_collector_and_touches_only_services_of_the_main_file(main, layer):
    added = set(layer["services"]) - set(main["services"])
    assert added == {COLLECTOR}
    assert set(layer["services"]) - {COLLECTOR} == APP_SERVICES


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_app_service_exports_its_traces_to_the_collector(main, layer, name):
    env = {**environment_of(main["services"][name]), **environment_of(layer["services"][name])}
    assert tracing_requested(env) == "otlp"
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", COLLECTOR, 4318)
    # Without the layer the service does not trace: the main file names no exporter.
    assert tracing_requested(environment_of(main["services"][name])) is None


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_every_app_service_shares_a_network_with_the_collector(main, layer, name):
    assert networks_of(main["services"][name]) & networks_of(layer["services"][COLLECTOR])


def test_the_collector_is_a_pinned_image_taking_otlp_published_on_loopback_only(layer):
    jaeger = layer["services"][COLLECTOR]
    image, _, tag = jaeger["image"].partition(":")
    assert image == "jaegertracing/all-in-one"
    assert tag[:1].isdigit(), "a version, never latest"
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    for port in jaeger["ports"]:
        assert str(port).startswith("127.0.0.1:")


def test_its_pinned_address_is_free_and_outside_the_frontends_range(main, layer):
    address = ipaddress.ip_address(
        layer["services"][COLLECTOR]["networks"]["frontends"]["ipv4_address"]
    )
    [config] = main["networks"]["frontends"]["ipam"]["config"]
    assert address in ipaddress.ip_network(config["subnet"])
    # The upper half is "a frontend" to the gateway; the collector must not look like one.
    assert address not in ipaddress.ip_network(config["ip_range"])
    assert address != ipaddress.ip_address(config["gateway"])
    pinned = {
        ipaddress.ip_address(network["ipv4_address"])
        for service in main["services"].values()
        if isinstance(service.get("networks"), dict)
        for network in service["networks"].values()
        if isinstance(network, dict) and "ipv4_address" in network
    }
    assert address not in pinned
