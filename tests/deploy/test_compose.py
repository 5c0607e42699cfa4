"""docker-compose.yml, the Dockerfile and the load balancer, checked by structure.

No Docker engine runs here, so these read the files the way compose and docker would and
hold them to the deployment rules: every process present and health-checked, start-up
ordered by health, only the gateway load balancer and the frontend published, and no
secret value anywhere in the file.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack import REPO_ROOT
from devstack.processes import PROCESSES
from services.api_gateway.config import IpNetwork
from services.api_gateway.context import client_address
from shared.roles import Service
from shared.secrets.registry import SecretRegistry

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
NGINX_CONF = REPO_ROOT / "docker" / "nginx" / "gateway-lb.conf"

APP_IMAGE = "legacycointrader-access:local"
STUBS = [service.value for service in Service if service is not Service.PORTFOLIO]
INFRASTRUCTURE = {"postgres", "redis", "sessions", "vault"}
ONE_SHOT = {"vault-init"}
APP_SERVICES = {"portfolio", "gateway", "frontend", *STUBS}
MONITORING = {"prometheus", "grafana"}
EXPECTED_SERVICES = INFRASTRUCTURE | ONE_SHOT | APP_SERVICES | MONITORING | {"gateway-lb"}
PUBLISHED = {"gateway-lb", "grafana"}
REQUIRED_VARIABLES = {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
# Which AppRole each app service logs in with, written out (the stubs share one).
APPROLE_OF = {
    "gateway": "gateway",
    "portfolio": "portfolio",
    "frontend": "frontend",
    "trading": "stub",
    "market": "stub",
    "strategy": "stub",
    "token": "stub",
    "execution": "stub",
    "monitoring": "stub",
}
CREDENTIALS_MOUNT = "/run/vault-credentials"

# `${NAME:?message}`: compose refuses to start unless NAME is set in the shell.
REQUIRED_REFERENCE = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*):\?[^}]*\}")
ANY_REFERENCE = re.compile(r"\$\{?(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
# Names that hold a credential (SECRETS_PROVIDER or TOKEN_SERVICE_URL only talk about one).
SECRET_LOOKING_NAME = re.compile(r"(PASSWORD|PASSWD|TOKEN|TOKEN_ID|SECRET|KEY|CREDENTIALS)$")
URL_CREDENTIALS = re.compile(r"://(?P<user>[^:/@\s]+):(?P<password>[^@\s]+)@")
RANDOM_LOOKING = re.compile(r"[A-Za-z0-9+/_=-]{20,}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose["services"]
    return services


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """Return a service's environment as a dict, whichever form the file uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def uvicorn_target(service: dict[str, Any]) -> tuple[str, int] | None:
    """Return (module:app, port) when the service runs uvicorn, else None."""
    command = service.get("command")
    if not isinstance(command, list) or "uvicorn" not in command:
        return None
    app = command[command.index("uvicorn") + 1]
    port = int(command[command.index("--port") + 1])
    return app, port


def all_strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in all_strings(key) + all_strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in all_strings(item)]
    return []


class TestServices:
    def test_every_process_of_the_stack_is_a_service(self, services):
        assert set(services) == EXPECTED_SERVICES

    def test_compose_runs_the_same_apps_as_make_run(self, services):
        local = {process.name: process.app for process in PROCESSES}
        in_compose = {name: uvicorn_target(services[name]) for name in APP_SERVICES}
        assert {name: target[0] for name, target in in_compose.items() if target} == local

    @pytest.mark.parametrize("name", sorted(APP_SERVICES | ONE_SHOT))
    def test_app_services_share_one_image_built_here(self, services, name):
        assert services[name]["image"] == APP_IMAGE
        assert services[name]["build"]["context"] == "."

    @pytest.mark.parametrize("name", STUBS)
    def test_each_stub_is_told_its_service_name(self, services, name):
        assert environment_of(services[name])["STUB_SERVICE_NAME"] == name

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_app_services_listen_on_all_container_interfaces(self, services, name):
        command = services[name]["command"]
        assert command[command.index("--host") + 1] == "0.0.0.0"

    @pytest.mark.parametrize("name", sorted(APP_SERVICES | ONE_SHOT))
    def test_app_containers_are_locked_down(self, services, name):
        service = services[name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]


class TestHealth:
    @pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - ONE_SHOT))
    def test_long_running_services_have_a_healthcheck(self, services, name):
        check = services[name].get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert not check.get("disable", False)
        assert check["test"][0] in ("CMD", "CMD-SHELL")
        assert services[name].get("restart") == "unless-stopped"

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_app_healthchecks_probe_their_own_port(self, services, name):
        target = uvicorn_target(services[name])
        assert target is not None
        port = str(target[1])
        assert services[name]["healthcheck"]["test"] == [
            "CMD",
            "python",
            "docker/healthcheck.py",
            port,
        ]

    def test_one_shot_job_runs_once(self, services):
        job = services["vault-init"]
        assert job["restart"] == "no"
        assert "healthcheck" not in job
        assert job["command"] == ["python", "docker/vault_init.py"]
        assert (REPO_ROOT / "docker" / "vault_init.py").is_file()


class TestDependencies:
    def test_every_dependency_waits_for_health_or_completion(self, services):
        for name, service in services.items():
            depends_on = service.get("depends_on", {})
            assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
            for target, rule in depends_on.items():
                assert target in services, f"{name} depends on unknown {target}"
                expected = (
                    "service_completed_successfully" if target in ONE_SHOT else "service_healthy"
                )
                if (name, target) == ("vault-init", "vault"):
                    expected = "service_started"  # Vault is healthy once the job unsealed it
                assert rule["condition"] == expected, f"{name} -> {target}"

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_services_start_after_the_secrets_are_written(self, services, name):
        depends_on = services[name]["depends_on"]
        assert depends_on["vault-init"]["condition"] == "service_completed_successfully"

    def test_secrets_job_starts_with_vault_and_waits_for_it_itself(self, services):
        assert services["vault-init"]["depends_on"] == {"vault": {"condition": "service_started"}}

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_services_wait_for_an_unsealed_vault(self, services, name):
        assert services[name]["depends_on"]["vault"]["condition"] == "service_healthy"
        # `bao status` exits 2 while sealed, so a sealed Vault is not healthy.
        assert services["vault"]["healthcheck"]["test"] == [
            "CMD",
            "bao",
            "status",
            "-address=http://127.0.0.1:8200",
        ]

    def test_portfolio_waits_for_postgres(self, services):
        assert services["portfolio"]["depends_on"]["postgres"]["condition"] == "service_healthy"

    def test_gateway_waits_for_redis_identity_and_every_downstream(self, services):
        depends_on = services["gateway"]["depends_on"]
        assert {"redis", "portfolio", *STUBS} <= set(depends_on)

    def test_load_balancer_waits_for_the_gateway_and_frontend_for_the_load_balancer(self, services):
        assert services["gateway-lb"]["depends_on"] == {"gateway": {"condition": "service_healthy"}}
        assert services["frontend"]["depends_on"]["gateway-lb"]["condition"] == "service_healthy"

    def test_start_order_has_no_cycle(self, services):
        done: set[str] = set()
        remaining = dict(services)
        while remaining:
            ready = [n for n, s in remaining.items() if set(s.get("depends_on", {})) <= done]
            assert ready, f"dependency cycle among {sorted(remaining)}"
            for name in ready:
                done.add(name)
                del remaining[name]


class TestPublishedPorts:
    def test_only_the_load_balancer_publishes_ports(self, services):
        published = {name for name, service in services.items() if service.get("ports")}
        assert published == PUBLISHED

    def test_the_gateway_and_the_frontend_are_published_on_loopback_only(self, services):
        assert services["gateway-lb"]["ports"] == ["127.0.0.1:8000:8000", "127.0.0.1:8080:8080"]

    def test_grafana_is_published_on_loopback_only(self, services):
        assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]

    def test_no_service_uses_the_host_network(self, services):
        for name, service in services.items():
            assert "network_mode" not in service, name

    def test_gateway_can_be_scaled_behind_the_load_balancer(self, services):
        gateway = services["gateway"]
        assert "container_name" not in gateway
        assert "ports" not in gateway
        assert "gateway:8000" in NGINX_CONF.read_text()

    def test_frontend_can_be_scaled_behind_the_load_balancer(self, services):
        frontend = services["frontend"]
        assert "container_name" not in frontend
        assert "ports" not in frontend
        assert frontend["networks"] == ["frontends", "sessions"]
        published = server_blocks()[2]
        assert "listen 8080;" in published
        assert "set $frontend_upstream http://frontend:8080;" in published
        assert "proxy_pass $frontend_upstream;" in published
        # Per request through Docker's DNS: every replica's address, round-robin.
        assert "resolver 127.0.0.11 valid=5s" in NGINX_CONF.read_text()

    def test_the_frontend_believes_forwarded_addresses_from_the_load_balancer_only(self, services):
        command = services["frontend"]["command"]
        allowed = command[command.index("--forwarded-allow-ips") + 1]
        lb_address = services["gateway-lb"]["networks"]["frontends"]["ipv4_address"]
        assert allowed == lb_address == "10.117.18.10"
        published = server_blocks()[2]
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in published
        assert "$proxy_add_x_forwarded_for" not in published

    def test_frontend_reaches_the_gateway_through_the_load_balancer(self, services):
        # The load balancer's internal listener, which keeps the browser address it forwards.
        assert environment_of(services["frontend"])["GATEWAY_URL"] == "http://gateway-lb:8001"
        assert "8001" not in str(services["gateway-lb"]["ports"])

    def test_gateway_reaches_every_downstream_on_its_compose_name(self, services):
        env = environment_of(services["gateway"])
        for service in Service:
            target = uvicorn_target(services[service.value])
            assert target is not None
            assert env[f"{service.value.upper()}_SERVICE_URL"] == (
                f"http://{service.value}:{target[1]}"
            )

    def test_gateway_trusts_the_address_the_load_balancer_overwrites(self, services):
        assert environment_of(services["gateway"])["GATEWAY_TRUSTED_PROXIES"]
        published, internal, _ = server_blocks()
        assert "listen 8000;" in published
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in published
        assert "$proxy_add_x_forwarded_for" not in published
        # Only the frontend's listener, never published, keeps the address it forwards.
        assert "listen 8001;" in internal
        assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in internal

    def test_postgres_is_ready_only_once_it_listens_on_tcp(self, services):
        # The image's first start runs a temporary server on the Unix socket only.
        assert services["postgres"]["healthcheck"]["test"] == [
            "CMD",
            "pg_isready",
            "-h",
            "127.0.0.1",
            "-U",
            "legacycointrader",
            "-d",
            "portfolio",
        ]

    def test_gateway_shares_its_state_in_redis(self, services):
        assert environment_of(services["gateway"])["GATEWAY_STATE_URL"] == "redis://redis:6379/0"

    def test_frontend_sessions_live_in_a_redis_only_the_frontend_reaches(self, compose, services):
        frontend = services["frontend"]
        assert environment_of(frontend)["FRONTEND_SESSION_URL"] == "redis://sessions:6379/0"
        assert frontend["depends_on"]["sessions"] == {"condition": "service_healthy"}
        assert services["sessions"]["networks"] == ["sessions"]
        assert compose["networks"]["sessions"] == {"internal": True}
        on_the_sessions_network = sorted(
            name for name, service in services.items() if "sessions" in service.get("networks", ())
        )
        assert on_the_sessions_network == ["frontend", "sessions"]
        on_the_state_network = sorted(
            name for name, service in services.items() if "state" in service.get("networks", ())
        )
        assert on_the_state_network == ["gateway", "redis"]


def server_blocks() -> list[str]:
    """Return the load balancer's server blocks: gateway :8000, gateway :8001, frontend :8080."""
    blocks = NGINX_CONF.read_text().split("server {")[1:]
    assert len(blocks) == 3
    return blocks


def pinned(services: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Return (service, network, address) for every pinned address."""
    return [
        (name, network, settings["ipv4_address"])
        for name, service in services.items()
        if isinstance(service.get("networks"), dict)
        for network, settings in service["networks"].items()
        if settings and "ipv4_address" in settings
    ]


def trusted_proxies(services: dict[str, dict[str, Any]]) -> tuple[IpNetwork, ...]:
    value = environment_of(services["gateway"])["GATEWAY_TRUSTED_PROXIES"]
    return tuple(ipaddress.ip_network(part.strip()) for part in value.split(","))


class TestNetwork:
    """Pinned subnets, so the gateway trusts exactly the load balancer and the frontends."""

    def test_the_compose_network_has_a_pinned_subnet(self, compose):
        (pool,) = compose["networks"]["default"]["ipam"]["config"]
        assert pool == {
            "subnet": "10.117.17.0/24",
            "gateway": "10.117.17.1",
            "ip_range": "10.117.17.128/25",
        }

    def test_the_frontends_have_an_internal_network_with_a_pinned_subnet(self, compose):
        network = compose["networks"]["frontends"]
        assert network["internal"] is True
        (pool,) = network["ipam"]["config"]
        assert pool == {
            "subnet": "10.117.18.0/24",
            "gateway": "10.117.18.1",
            "ip_range": "10.117.18.128/25",
        }

    def test_the_pinned_addresses_are_the_load_balancer_vault_and_prometheus(self, services):
        assert sorted(pinned(services)) == [
            ("gateway-lb", "default", "10.117.17.10"),
            ("gateway-lb", "frontends", "10.117.18.10"),
            ("prometheus", "frontends", "10.117.18.3"),
            ("vault", "frontends", "10.117.18.2"),
        ]

    def test_pinned_addresses_are_never_handed_to_another_container(self, compose, services):
        addresses = [address for _, _, address in pinned(services)]
        assert len(addresses) == len(set(addresses))
        for _, network, address in pinned(services):
            (pool,) = compose["networks"][network]["ipam"]["config"]
            assert ipaddress.ip_address(address) in ipaddress.ip_network(pool["subnet"])
            assert ipaddress.ip_address(address) not in ipaddress.ip_network(pool["ip_range"])
            assert address != pool["gateway"]

    def test_only_frontend_replicas_take_addresses_from_the_frontends_range(self, services):
        # The gateway trusts that range: anything else on the network must be pinned.
        members = {
            name for name, service in services.items() if "frontends" in service.get("networks", ())
        }
        assert members == {"frontend", "gateway-lb", "prometheus", "vault"}
        pinned_there = {name for name, network, _ in pinned(services) if network == "frontends"}
        assert members - pinned_there == {"frontend"}

    def test_gateway_trusts_only_the_load_balancer_and_the_frontends_range(self, compose, services):
        (pool,) = compose["networks"]["frontends"]["ipam"]["config"]
        assert trusted_proxies(services) == (
            ipaddress.ip_network("10.117.17.10/32"),
            ipaddress.ip_network(pool["ip_range"]),
        )
        assert ipaddress.ip_network(pool["ip_range"]) == ipaddress.ip_network("10.117.18.128/25")

    @pytest.mark.parametrize(
        ("peer", "forwarded_for", "client"),
        [
            # Published :8000: the load balancer overwrites the header with what it saw.
            ("10.117.17.10", "203.0.113.5", "203.0.113.5"),
            # Published-port traffic seen from the bridge address stays that one address.
            ("10.117.17.10", "10.117.17.1", "10.117.17.1"),
            # A frontend replica's login through :8001: browser address, then the replica's.
            ("10.117.17.10", "198.51.100.7, 10.117.18.130", "198.51.100.7"),
            ("10.117.17.10", "198.51.100.8, 10.117.18.254", "198.51.100.8"),
            # Vault on the frontends network is pinned below the range: not trusted.
            ("10.117.17.10", "198.51.100.7, 10.117.18.2", "10.117.18.2"),
            # A forged chain through :8001 from another container stops at that container.
            ("10.117.17.10", "198.51.100.7, 10.117.17.130", "10.117.17.130"),
            # Any other container calling the gateway directly counts as itself.
            ("10.117.17.130", "198.51.100.7", "10.117.17.130"),
            ("10.117.17.1", "198.51.100.7", "10.117.17.1"),
        ],
    )
    def test_gateway_sees_the_address_the_load_balancer_reports(
        self, services, peer, forwarded_for, client
    ):
        trusted = trusted_proxies(services)
        assert client_address(peer, forwarded_for.encode(), trusted) == client


class TestSecrets:
    @pytest.mark.parametrize("name", sorted(APP_SERVICES | ONE_SHOT))
    def test_services_read_their_secrets_from_vault(self, services, name):
        env = environment_of(services[name])
        assert env["SECRETS_PROVIDER"] == "vault"
        assert env["VAULT_ADDR"] == "http://vault:8200"
        assert env["VAULT_SECRET_PATH"] == "secret/legacycointrader"

    def test_every_app_service_has_an_approle(self):
        assert set(APPROLE_OF) == APP_SERVICES

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_app_services_log_in_with_their_own_approle_files(self, services, name):
        env = environment_of(services[name])
        assert env["VAULT_SECRET_LAYOUT"] == "per-service"
        assert env["VAULT_ROLE_ID_FILE"] == "/run/vault-credentials/role_id"
        assert env["VAULT_SECRET_ID_FILE"] == "/run/vault-credentials/secret_id"

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_no_app_service_is_given_a_vault_token(self, services, name):
        env = environment_of(services[name])
        assert not {key for key in env if "TOKEN" in key and key != "TOKEN_SERVICE_URL"}
        assert "VAULT_TOKEN" not in str(services[name])
        assert "root_token" not in str(services[name])

    @pytest.mark.parametrize("name", sorted(APP_SERVICES))
    def test_each_app_service_mounts_only_its_own_credentials_read_only(self, services, name):
        volumes = services[name]["volumes"]
        assert volumes == [f"vault-credentials-{APPROLE_OF[name]}:/run/vault-credentials:ro"]

    def test_the_job_alone_holds_the_root_token_and_writes_every_credentials_volume(
        self, compose, services
    ):
        job = services["vault-init"]
        env = environment_of(job)
        assert "VAULT_TOKEN" not in env
        assert env["VAULT_CREDENTIALS_DIR"] == "/var/lib/vault-credentials"
        assert job["volumes"][1:] == [
            "vault-credentials-gateway:/var/lib/vault-credentials/gateway",
            "vault-credentials-portfolio:/var/lib/vault-credentials/portfolio",
            "vault-credentials-frontend:/var/lib/vault-credentials/frontend",
            "vault-credentials-stub:/var/lib/vault-credentials/stub",
            "vault-credentials-prometheus:/var/lib/vault-credentials/prometheus",
        ]
        for role in ("gateway", "portfolio", "frontend", "stub"):
            assert f"vault-credentials-{role}" in compose["volumes"]
            holders = {
                name
                for name, service in services.items()
                if f"vault-credentials-{role}:" in str(service.get("volumes", []))
            }
            expected = {name for name, approle in APPROLE_OF.items() if approle == role}
            assert holders == expected | {"vault-init"}, role
        # The metrics scrape token: written by the job, read by Prometheus alone.
        holders = {
            name
            for name, service in services.items()
            if "vault-credentials-prometheus:" in str(service.get("volumes", []))
        }
        assert holders == {"vault-init", "prometheus"}

    def test_the_job_and_the_services_run_as_the_same_user(self, services):
        # The credentials are 0600, owned by whoever wrote them: the job must run as the
        # services' user, which is the image's USER, overridden by nobody.
        for name in APP_SERVICES | ONE_SHOT:
            assert services[name]["image"] == APP_IMAGE
            assert "user" not in services[name], name

    def test_database_password_comes_from_the_env_file(self, services):
        postgres = environment_of(services["postgres"])
        password = REQUIRED_REFERENCE.fullmatch(postgres["POSTGRES_PASSWORD"])
        assert password is not None
        assert password["name"] == "POSTGRES_PASSWORD"
        assert "make compose-env" in postgres["POSTGRES_PASSWORD"]

    def test_vault_is_given_no_token_it_would_trust(self, services):
        # A real server: its root token is made at initialisation, never set from outside.
        assert "environment" not in services["vault"]
        assert services["vault"]["command"] == ["server"]

    def test_every_variable_is_required_and_none_has_a_default(self):
        text = COMPOSE_FILE.read_text()
        referenced = {match["name"] for match in ANY_REFERENCE.finditer(text)}
        required = {match["name"] for match in REQUIRED_REFERENCE.finditer(text)}
        assert referenced == required == REQUIRED_VARIABLES
        assert ":-" not in text
        assert "-}" not in text

    def test_no_managed_secret_is_set_in_the_file(self, services):
        names = {name for entry in SecretRegistry.load() for name in entry.candidates}
        for service_name, service in services.items():
            assert not names & set(environment_of(service)), service_name

    def test_secret_looking_variables_hold_only_required_references(self, services):
        for service_name, service in services.items():
            for key, value in environment_of(service).items():
                if SECRET_LOOKING_NAME.search(key):
                    assert REQUIRED_REFERENCE.fullmatch(value), f"{service_name}: {key}"

    def test_credentials_in_urls_are_required_references(self, compose):
        for value in all_strings(compose):
            for match in URL_CREDENTIALS.finditer(value):
                assert REQUIRED_REFERENCE.fullmatch(match["password"]), value

    def test_no_value_looks_like_a_key_or_a_password(self, compose):
        for value in all_strings(compose):
            stripped = REQUIRED_REFERENCE.sub("", value)
            assert "-----BEGIN" not in stripped
            for candidate in RANDOM_LOOKING.findall(stripped):
                has_digit = any(c.isdigit() for c in candidate)
                has_letter = any(c.isalpha() for c in candidate)
                assert not (has_digit and has_letter), f"looks like a secret: {candidate}"


class TestVault:
    """A real OpenBao server whose data, unseal key and root token outlive restarts."""

    def test_vault_is_a_real_server_on_the_config_file_tested_here(self, services):
        vault = services["vault"]
        assert vault["image"].startswith("openbao/openbao:")
        assert "./docker/openbao/bao.hcl:/openbao/config/bao.hcl:ro" in vault["volumes"]
        assert (REPO_ROOT / "docker" / "openbao" / "bao.hcl").is_file()
        assert "-dev" not in vault["command"]

    def test_vault_storage_is_a_named_volume_on_the_raft_path(self, compose, services):
        assert "vault-data:/openbao/file" in services["vault"]["volumes"]
        assert "vault-data" in compose["volumes"]
        config = (REPO_ROOT / "docker" / "openbao" / "bao.hcl").read_text()
        assert 'storage "raft"' in config
        assert re.search(r'^\s*path\s*=\s*"/openbao/file"$', config, re.MULTILINE)

    def test_unseal_material_lives_on_its_own_volume_read_by_the_job_only(self, compose, services):
        assert "vault-unseal" in compose["volumes"]
        job = services["vault-init"]
        assert job["volumes"][0] == "vault-unseal:/var/lib/vault-unseal"
        assert environment_of(job)["VAULT_INIT_FILE"] == "/var/lib/vault-unseal/init.json"
        for name, service in services.items():
            if name != "vault-init":
                assert "vault-unseal" not in str(service.get("volumes", [])), name

    def test_the_image_lets_the_job_write_its_volume_and_nobody_else_read_it(self):
        text = " ".join(DOCKERFILE.read_text().replace("\\\n", " ").split())
        owned = (
            "/var/lib/vault-unseal /run/vault-credentials /var/lib/vault-credentials "
            "/var/lib/vault-credentials/gateway /var/lib/vault-credentials/portfolio "
            "/var/lib/vault-credentials/frontend /var/lib/vault-credentials/stub"
        )
        assert "mkdir -p /app/var /var/lib/vault-unseal /run/vault-credentials " in text
        assert "chown -R app:app /app/var /var/lib/vault-unseal /var/lib/vault-credentials " in text
        assert f"chmod 700 {owned}" in text
        assert "USER 10001:10001" in text


@pytest.fixture(scope="module")
def stages() -> list[list[str]]:
    """Return the instructions of each Dockerfile stage, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    stages: list[list[str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


class TestDockerfile:
    def test_is_multi_stage_with_a_named_builder(self, stages):
        assert len(stages) >= 2
        assert stages[0][0].split()[-1] == "builder"

    def test_final_stage_is_python_slim(self, stages):
        assert "slim" in DOCKERFILE.read_text().split("ARG PYTHON_IMAGE=")[1].split()[0]
        assert stages[-1][0].startswith("FROM ${PYTHON_IMAGE}")

    def test_final_stage_takes_the_venv_from_the_builder(self, stages):
        assert any(line.startswith("COPY --from=builder /opt/venv") for line in stages[-1])

    def test_final_stage_runs_as_a_non_root_user(self, stages):
        users = [line.split()[1] for line in stages[-1] if line.upper().startswith("USER ")]
        assert users, "no USER in the final stage"
        assert users[-1].split(":")[0] not in ("root", "0")
        last_user = max(i for i, line in enumerate(stages[-1]) if line.startswith("USER "))
        assert last_user < next(i for i, line in enumerate(stages[-1]) if line.startswith("CMD"))

    def test_final_stage_installs_no_build_tools(self, stages):
        final = " ".join(stages[-1])
        assert "apt-get install" not in final
        for tool in ("gcc", "build-essential", "make ", "clang"):
            assert tool not in final

    def test_default_command_is_overridable_exec_form(self, stages):
        cmd = next(line for line in stages[-1] if line.startswith("CMD"))
        assert cmd.startswith('CMD ["python", "-m", "uvicorn"')
        assert not any(line.startswith("ENTRYPOINT") for line in stages[-1])

    @pytest.mark.parametrize("pattern", [".env", ".venv/", ".git/", "var/", "tests/"])
    def test_build_context_leaves_out_secrets_and_local_state(self, pattern):
        assert pattern in DOCKERIGNORE.read_text().splitlines()

    def test_the_image_carries_no_local_runner(self):
        pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
        assert not any(dep.startswith("honcho") for dep in pyproject["project"]["dependencies"])
        assert any(
            dep.startswith("honcho") for dep in pyproject["project"]["optional-dependencies"]["dev"]
        )
        assert "devstack/" in DOCKERIGNORE.read_text().splitlines()


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_load_balancer_config_is_valid_nginx(tmp_path: Path):
    (tmp_path / "logs").mkdir()
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"error_log {tmp_path}/logs/error.log;\npid {tmp_path}/nginx.pid;\nevents {{}}\n"
        f"http {{ access_log off; include {NGINX_CONF}; }}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-p", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
