"""Prometheus, its alert rules and the Grafana dashboard of compose, against real services.

The real processes (portfolio, a trading stub, a gateway on Redis, the frontend) are started
once; their `/metrics` say which metric names exist, and every expression of the rules and
the dashboard must name only those (or `up`, which Prometheus records itself). promtool,
when installed, checks the configuration and the rules the way Prometheus loads them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack import REPO_ROOT
from devstack.databases import SHARED_REDIS_URL, delete_prefix, sqlite_database, unique_prefix
from devstack.launch import GATEWAY_APP
from devstack.servers import ServerProcess
from tests.support.metrics import label_values, parse, value
from tests.support.stack import fast_identity, service_urls, stack_env, start_portfolio_and_stub

PROMETHEUS_DIR = REPO_ROOT / "docker" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "access-layer.json"
COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
PASSWORD = "a long enough test password"
# Recorded by Prometheus itself for every target, not exported by a service.
PROMETHEUS_OWN = {"up"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Return the metric names a PromQL expression reads (not its functions or labels)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if expr[match.end() :].lstrip().startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def exported_names(exposition: str) -> set[str]:
    """Return every sample name an exposition's families can carry."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
            else:
                names.add(name)
    return names


def rule_expressions() -> dict[str, str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())
    return {rule["alert"]: rule["expr"] for group in rules["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {
        panel["title"]: [target["expr"] for target in panel["targets"]]
        for panel in dashboard["panels"]
    }


def test_the_name_reader_finds_metrics_and_skips_functions_labels_and_ranges():
    expr = (
        "histogram_quantile(0.99, sum by (job, le) (rate(http_request_duration_seconds_bucket"
        '{status="5xx", job=~"a|b"}[5m]))) / ignoring (le) up > 0.5 and on (job) foo_total'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up", "foo_total"}
    assert metric_names("time() - min by (instance) (x_seconds) > 120") == {"x_seconds"}


# --- the real services --------------------------------------------------------------


@dataclass
class Services:
    gateway: str
    portfolio: str
    frontend: str
    stub: str
    token: str
    username: str

    def scrape(self, url: str) -> str:
        response = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {self.token}"})
        assert response.status_code == 200, response.text
        return response.text

    @property
    def urls(self) -> dict[str, str]:
        return {
            "gateway": self.gateway,
            "portfolio": self.portfolio,
            "frontend": self.frontend,
            "stub": self.stub,
        }


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    logs = tmp_path_factory.mktemp("monitoring")
    prefix = unique_prefix()
    with ExitStack() as stack:
        database_url = stack.enter_context(sqlite_database(logs))
        identity = fast_identity(database_url)
        stack.callback(identity.close)
        username = f"metrics-{uuid.uuid4().hex[:8]}"
        identity.create_user(username, PASSWORD, roles=["trading", "portfolio"])
        env = stack_env(database_url)
        portfolio, stub = start_portfolio_and_stub(stack, env, logs)
        gateway_env = {
            **env,
            **service_urls(portfolio.url, stub.url),
            "GATEWAY_STATE_URL": SHARED_REDIS_URL,
            "GATEWAY_STATE_PREFIX": prefix,
            "GATEWAY_ACCESS_LOG": str(logs / "access.log"),
        }
        stack.callback(delete_prefix, SHARED_REDIS_URL, prefix)
        gateway = stack.enter_context(
            ServerProcess(GATEWAY_APP, env=gateway_env, log_path=logs / "gateway.log")
        )
        frontend = stack.enter_context(
            ServerProcess(
                "services.frontend.app:app",
                env={**env, "GATEWAY_URL": gateway.url, "SECURITY__COOKIE_SECURE": "false"},
                log_path=logs / "frontend.log",
            )
        )
        yield Services(
            gateway=gateway.url,
            portfolio=portfolio.url,
            frontend=frontend.url,
            stub=stub.url,
            token=env["METRICS_SCRAPE_TOKEN"],
            username=username,
        )


@pytest.fixture(scope="module")
def exported(services: Services) -> set[str]:
    names: set[str] = set()
    for url in services.urls.values():
        names |= exported_names(services.scrape(url))
    return names


@pytest.mark.e2e
class TestRealServices:
    @pytest.mark.parametrize("service", ["gateway", "portfolio", "frontend", "stub"])
    def test_metrics_are_404_like_an_unknown_path_without_the_token(self, services, service):
        url = services.urls[service]
        unknown = httpx.get(f"{url}/no-such-path-at-all")
        for headers in ({}, {"Authorization": "Bearer " + "x" * 64}):
            response = httpx.get(f"{url}/metrics", headers=headers)
            assert response.status_code == unknown.status_code
            assert response.content == unknown.content
        if service != "stub":  # the stub's every other path is its echo, which refuses
            assert unknown.status_code == 404

    def test_a_login_and_a_proxied_call_move_the_gateways_and_portfolios_metrics(self, services):
        gateway_before = parse(services.scrape(services.gateway))
        portfolio_before = parse(services.scrape(services.portfolio))
        with httpx.Client(base_url=services.gateway) as http:
            login = http.post(
                "/auth/token", json={"username": services.username, "password": PASSWORD}
            )
            assert login.status_code == 200, login.text
            bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
            for order in ("1", "2", "3"):
                assert http.get(f"/api/trading/orders/{order}", headers=bearer).status_code == 200
            wrong = http.post("/auth/token", json={"username": services.username, "password": "x"})
            assert wrong.status_code == 401
        gateway = parse(services.scrape(services.gateway))
        portfolio = parse(services.scrape(services.portfolio))

        def moved(after, before, name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        proxied = {"route": "/api/{service}/{path}", "method": "GET", "status": "2xx"}
        assert moved(gateway, gateway_before, "http_requests_total", **proxied) == 3
        assert (
            moved(
                gateway,
                gateway_before,
                "gateway_upstream_request_duration_seconds_count",
                service="trading",
            )
            == 3
        )
        auth = "gateway_authentications_total"
        assert moved(gateway, gateway_before, auth, method="jwt", outcome="success") == 3
        assert moved(gateway, gateway_before, auth, method="password", outcome="success") == 1
        failed = {"method": "password", "outcome": "invalid_credentials"}
        assert moved(gateway, gateway_before, auth, **failed) == 1
        throttle = "gateway_throttle_decisions_total"
        assert moved(gateway, gateway_before, throttle, operation="login", decision="allowed") == 2
        assert value(gateway, "gateway_shared_state_up", backend="redis") == 1
        logins = "portfolio_logins_total"
        assert moved(portfolio, portfolio_before, logins, outcome="success") == 1
        assert moved(portfolio, portfolio_before, logins, outcome="invalid_credentials") == 1
        assert (
            moved(portfolio, portfolio_before, "portfolio_password_hash_duration_seconds_count")
            == 2
        )
        for samples in (gateway, portfolio):
            labels = label_values(samples)
            assert services.username not in labels
            assert "127.0.0.1" not in labels
            assert not any("/orders/" in label for label in labels)

    def test_every_rule_names_only_metrics_the_services_export(self, exported):
        for alert, expr in rule_expressions().items():
            unknown = metric_names(expr) - exported - PROMETHEUS_OWN
            assert not unknown, f"{alert}: {unknown}"

    def test_every_dashboard_panel_names_only_metrics_the_services_export(self, exported):
        for title, exprs in dashboard_expressions().items():
            for expr in exprs:
                names = metric_names(expr)
                assert names, f"{title}: no metric in {expr!r}"
                assert not names - exported - PROMETHEUS_OWN, f"{title}: {names - exported}"


# --- the configuration --------------------------------------------------------------


def scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def compose_port(service: dict[str, Any]) -> int:
    command = service["command"]
    return int(command[command.index("--port") + 1])


def test_prometheus_scrapes_every_app_service_on_its_own_port_with_the_token_file():
    jobs = scrape_jobs()
    apps = {
        name: service
        for name, service in COMPOSE["services"].items()
        if "uvicorn" in service.get("command", [])
    }
    assert set(jobs) == set(apps)
    prometheus = COMPOSE["services"]["prometheus"]
    mounts = dict(volume.split(":")[:2][::-1] for volume in prometheus["volumes"])
    for name, job in jobs.items():
        (target,) = job["dns_sd_configs"]
        assert target["names"] == [name]
        assert target["port"] == compose_port(apps[name])
        authorization = job["authorization"]
        assert authorization["type"] == "Bearer"
        token_file = Path(authorization["credentials_file"])
        assert mounts[str(token_file.parent)] == "vault-credentials-prometheus"
    assert mounts["/etc/prometheus"] == "./docker/prometheus"


def test_alert_rules_cover_errors_logins_downstreams_and_redis():
    expressions = rule_expressions()
    assert {
        "ServerErrorRateHigh",
        "LoginFailureSpike",
        "DownstreamUnavailable",
        "ServiceDown",
        "SharedStateDegraded",
    } <= set(expressions)
    assert 'status="5xx"' in expressions["ServerErrorRateHigh"]
    assert "gateway_authentications_total" in expressions["LoginFailureSpike"]
    assert "gateway_upstream_errors_total" in expressions["DownstreamUnavailable"]
    assert "gateway_shared_state_up" in expressions["SharedStateDegraded"]


def test_dashboard_shows_requests_latency_errors_auth_throttles_and_redis():
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    exprs = " ".join(target["expr"] for panel in panels for target in panel["targets"])
    for wanted in (
        "rate(http_requests_total",
        "histogram_quantile(0.5,",
        "histogram_quantile(0.99,",
        'status=~"4xx|5xx"',
        "gateway_authentications_total",
        "gateway_throttle_decisions_total",
        "gateway_shared_state_up",
    ):
        assert wanted in exprs, wanted
    datasource = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"]
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "access-layer.yml").read_text()
    )["providers"][0]
    grafana = COMPOSE["services"]["grafana"]
    assert f"./docker/grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")
def test_promtool_accepts_the_configuration_and_the_rules(tmp_path: Path):
    # The compose paths, moved under tmp_path: promtool opens every file a config names.
    token = tmp_path / "metrics_token"
    token.write_text("x" * 64)
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/alerts.yml", str(PROMETHEUS_DIR / "alerts.yml"))
    text = text.replace("/run/metrics-credentials/metrics_token", str(token))
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    for command in (["check", "config", str(config)], ["check", "rules", "alerts.yml"]):
        result = subprocess.run(
            [str(PROMTOOL), *command], cwd=PROMETHEUS_DIR, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
