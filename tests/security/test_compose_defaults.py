"""Insecure deployment defaults: compose, the image and the local runner."""

import re

import pytest
import yaml

from devstack import REPO_ROOT
from devstack.environment import stack_environment
from devstack.ports import resolve_ports
from devstack.processes import PROCESSES

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = [name for name, svc in SERVICES.items() if svc.get("image", "").startswith("legacy")]


def test_every_variable_compose_interpolates_is_required_never_defaulted():
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    references = re.findall(r"\$\{([^}]*)\}", text)
    assert references
    for reference in references:
        assert re.fullmatch(r"[A-Z_]+:\?.+", reference), f"${{{reference}}} has a default"


def test_only_the_load_balancer_and_grafana_are_published_on_loopback():
    # The frontend is published by the load balancer (:8080), so it can scale.
    published = {name: svc["ports"] for name, svc in SERVICES.items() if svc.get("ports")}
    assert set(published) == {"gateway-lb", "grafana"}
    for ports in published.values():
        assert all(str(port).startswith("127.0.0.1:") for port in ports)


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_containers_are_locked_down(name):
    service = SERVICES[name]
    assert service.get("read_only") is True
    assert service.get("cap_drop") == ["ALL"]
    assert "no-new-privileges:true" in service.get("security_opt", [])
    assert not service.get("privileged")
    assert "network_mode" not in service


def test_only_the_gateway_can_reach_redis():
    # Redis holds revocations: a container that could reach it could un-revoke a token.
    networks = SERVICES["redis"].get("networks")
    assert networks, "redis must sit on its own network"
    for network in networks:
        assert COMPOSE["networks"][network].get("internal") is True
        members = {name for name, svc in SERVICES.items() if network in (svc.get("networks") or [])}
        assert members == {"redis", "gateway"}


def test_the_image_runs_as_an_unprivileged_user():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users
    assert users[-1].split(":")[0] not in ("0", "root")


def gateway_commands() -> dict[str, str]:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    return {
        "compose": " ".join(SERVICES["gateway"]["command"]),
        "Dockerfile CMD": re.findall(r"^CMD (.*)$", dockerfile, flags=re.MULTILINE)[-1],
        "Procfile": next(
            line
            for line in (REPO_ROOT / "Procfile").read_text().splitlines()
            if line.startswith("gateway:")
        ),
        "devstack": next(p for p in PROCESSES if p.name == "gateway").command(8000),
    }


@pytest.mark.parametrize("where", list(gateway_commands()))
def test_the_gateway_never_lets_uvicorn_believe_forwarded_headers(where):
    command = gateway_commands()[where]
    assert "services.api_gateway.app:app" in command
    assert "--no-proxy-headers" in command, where
    assert "--forwarded-allow-ips" not in command


def test_the_local_runner_trusts_only_loopback_for_forwarded_addresses():
    ports = resolve_ports({})
    assert stack_environment({}, ports)["GATEWAY_TRUSTED_PROXIES"] == "127.0.0.1/32"
    chosen = {"GATEWAY_TRUSTED_PROXIES": "10.1.2.3/32"}
    assert stack_environment(chosen, ports)["GATEWAY_TRUSTED_PROXIES"] == "10.1.2.3/32"
