"""Secrets and database passwords never reach a log line, whatever the traffic."""

import subprocess
import sys

import httpx

from devstack.ports import free_port
from tests.security.conftest import DATABASE_PASSWORD, PASSWORD
from tests.security.test_jwt import claims, signed


def drive(stack) -> dict[str, str]:
    """Make every kind of traffic; return the credentials it used."""
    name, key = stack.user("trading", "admin", api_key=True)
    with httpx.Client(base_url=stack.gateway_url) as client:
        token = client.post("/auth/token", json={"username": name, "password": PASSWORD})
        bearer = token.json()["access_token"]
        client.post("/auth/token", json={"username": name, "password": PASSWORD + "x"})
        client.post("/auth/token", data={"username": name, "password": PASSWORD + "y"})
        auth = {"Authorization": f"Bearer {bearer}"}
        client.get("/api/trading/orders?secret=1", headers=auth)
        client.get("/api/trading/orders", headers={"X-API-Key": key})
        client.get("/api/trading/orders", headers={"X-API-Key": key[:-1] + "0"})
        client.get("/admin/users", headers=auth)
        client.get("/api/portfolio/positions", headers=auth)
        forged = signed(stack.env["GATEWAY_JWT_PRIVATE_KEY"], claims(aud="x"))
        client.get("/auth/me", headers={"Authorization": f"Bearer {forged}"})
        client.post(
            "/auth/password/rotate",
            json={"username": name, "current_password": "wrong" * 4, "new_password": "n" * 20},
        )
        client.post("/auth/logout", headers=auth)
    return {"user password": PASSWORD, "API key": key, "bearer token": bearer}


def test_no_log_line_holds_a_secret_a_password_or_a_credential(stack):
    used = drive(stack)
    forbidden = {**stack.secret_values(), **used}
    logs = sorted(stack.logs.glob("*.log"))
    assert {path.name for path in logs} >= {"portfolio.log", "gateway.log", "access.log"}
    for path in logs:
        text = path.read_text(errors="replace")
        for what, value in forbidden.items():
            assert value not in text, f"{what} found in {path.name}"


def test_a_refused_database_connection_does_not_print_its_password(stack):
    port = free_port()
    env = {
        **stack.env,
        "PORTFOLIO_DATABASE_URL": f"postgresql+asyncpg://postgres:{DATABASE_PASSWORD}@127.0.0.1:{port}/portfolio",
        "PORTFOLIO_DATABASE_CONNECT_TIMEOUT": "2",
    }
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "services.portfolio.app:app", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert DATABASE_PASSWORD not in result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
