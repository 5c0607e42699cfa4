"""The portfolio app's wiring: start-up, health, readiness, JSON errors, a real process."""

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from devstack.databases import POSTGRES_URL
from devstack.servers import ServerProcess
from services.portfolio.app import create_app
from services.portfolio.errors import ConfigurationError
from services.portfolio.identity import PortfolioIdentityService
from tests.portfolio.callers import ASSERTION_PUBLIC_KEY
from tests.portfolio.conftest import CHEAP_ARGON2_ENV, PASSWORD, env_secrets, make_settings
from tests.portfolio.http import SERVICE_TOKEN, open_client


async def test_healthz_and_readyz(settings):
    async with open_client(settings, token=None) as (_, client):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ready",
        "degraded": [],
        "checks": {
            "database": {
                "status": "up",
                "required": True,
                "detail": ready.json()["checks"]["database"]["detail"],
            }
        },
    }
    assert ready.json()["checks"]["database"]["detail"].startswith(
        ("SQLite database ", "PostgreSQL database ")
    )


async def test_start_up_applies_the_migrations(settings):
    async with open_client(settings) as (app, client):
        assert (await client.get("/internal/identity/users")).json() == {"users": []}
        await app.state.runtime.identity.create_user("first", PASSWORD, ["trading"])


@pytest.mark.parametrize("environ", [{}, {"IDENTITY_SERVICE_TOKEN": ""}])
async def test_app_refuses_to_start_without_the_service_token(sqlite_url, environ):
    app = create_app(make_settings(sqlite_url), secrets_manager=env_secrets(environ))
    with pytest.raises(ConfigurationError) as caught:
        async with app.router.lifespan_context(app):
            pass
    assert "IDENTITY_SERVICE_TOKEN" in str(caught.value)
    assert "PORTFOLIO_INTERNAL_TOKEN" in str(caught.value)


async def test_app_refuses_a_short_service_token_without_showing_it(sqlite_url):
    app = create_app(
        make_settings(sqlite_url),
        secrets_manager=env_secrets({"IDENTITY_SERVICE_TOKEN": "tooshort-token"}),
    )
    with pytest.raises(ConfigurationError, match="32") as caught:
        async with app.router.lifespan_context(app):
            pass
    assert "tooshort-token" not in str(caught.value)


async def test_the_legacy_alias_of_the_service_token_is_accepted(sqlite_url):
    app = create_app(
        make_settings(sqlite_url),
        secrets_manager=env_secrets(
            {
                "PORTFOLIO_INTERNAL_TOKEN": SERVICE_TOKEN,
                "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
            }
        ),
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://portfolio") as client:
            response = await client.get(
                "/internal/identity/users", headers={"X-Service-Token": SERVICE_TOKEN}
            )
    assert response.status_code == 200


async def test_unknown_paths_and_methods_answer_json_errors(settings):
    async with open_client(settings) as (_, client):
        missing = await client.get("/no/such/path")
        wrong_method = await client.delete("/internal/identity/users")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def _drop_database(url: str) -> None:
    name = make_url(url).database
    admin = (
        make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.mark.postgres
async def test_lost_database_makes_readyz_and_the_api_answer_503(postgres_url):
    url = postgres_url
    async with open_client(make_settings(url)) as (_, client):
        assert (await client.get("/readyz")).status_code == 200
        await _drop_database(url)
        ready = await client.get("/readyz")
        users = await client.get("/internal/identity/users")
    assert ready.json()["error"]["checks"]["database"]["status"] == "down"
    for response in (ready, users):
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert make_url(url).database in error["message"]
        assert "Traceback" not in response.text


@pytest.mark.e2e
def test_a_real_uvicorn_process_serves_the_identity_api(sqlite_url, tmp_path):
    with PortfolioIdentityService(settings=make_settings(sqlite_url)) as identity:
        identity.create_user("ops", PASSWORD, roles=["portfolio"])
    env = {
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "IDENTITY_SERVICE_TOKEN": SERVICE_TOKEN,
        "GATEWAY_ASSERTION_PUBLIC_KEY": ASSERTION_PUBLIC_KEY,
        "SECRETS_PROVIDER": "env",
        **CHEAP_ARGON2_ENV,
    }
    with ServerProcess(
        "services.portfolio.app:app", env=env, log_path=tmp_path / "portfolio.log"
    ) as server:
        assert httpx.get(server.url + "/readyz").status_code == 200
        response = httpx.post(
            server.url + "/internal/identity/authenticate",
            json={"username": "ops", "password": PASSWORD},
            headers={"X-Service-Token": SERVICE_TOKEN},
        )
    assert response.status_code == 200
    assert response.json()["user"]["username"] == "ops"
    assert PASSWORD not in (tmp_path / "portfolio.log").read_text()


@pytest.mark.e2e
def test_a_real_process_without_the_service_token_does_not_start(sqlite_url, tmp_path):
    env = {
        "PORTFOLIO_DATABASE_URL": sqlite_url,
        "SECRETS_PROVIDER": "env",
        "IDENTITY_SERVICE_TOKEN": "",
        "PORTFOLIO_INTERNAL_TOKEN": "",
    }
    log = tmp_path / "portfolio.log"
    with pytest.raises(RuntimeError, match="exited"):
        ServerProcess("services.portfolio.app:app", env=env, log_path=log).start()
    assert "IDENTITY_SERVICE_TOKEN" in log.read_text()
