"""Gateway fixtures: keys, a real identity service, a real upstream, an in-process gateway."""

import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from devstack.databases import postgres_database
from devstack.servers import ServerProcess
from services.api_gateway.app import create_app
from services.api_gateway.config import GatewaySecrets, Settings
from services.api_gateway.runtime import Runtime
from shared.keys import generate_private_key, load_private_key, public_key_text
from shared.roles import SERVICES

PASSWORD = "correct horse battery staple"
# Fast Argon2 for tests only; production keeps the library defaults.
FAST_ARGON2 = {
    "PORTFOLIO_ARGON2_TIME_COST": "1",
    "PORTFOLIO_ARGON2_MEMORY_COST": "8",
    "PORTFOLIO_ARGON2_PARALLELISM": "1",
}


@dataclass(frozen=True)
class Keys:
    jwt_private: str
    assertion_private: str
    assertion_public: str
    identity_token: str

    def secrets(self, previous_public: str | None = None) -> GatewaySecrets:
        return GatewaySecrets(
            jwt_private_key=SecretStr(self.jwt_private),
            assertion_private_key=SecretStr(self.assertion_private),
            identity_service_token=SecretStr(self.identity_token),
            jwt_previous_public_key=SecretStr(previous_public) if previous_public else None,
        )

    def env(self) -> dict[str, str]:
        return {
            "SECRETS_PROVIDER": "env",
            "GATEWAY_JWT_PRIVATE_KEY": self.jwt_private,
            "GATEWAY_ASSERTION_PRIVATE_KEY": self.assertion_private,
            "GATEWAY_ASSERTION_PUBLIC_KEY": self.assertion_public,
            "IDENTITY_SERVICE_TOKEN": self.identity_token,
        }


@pytest.fixture(scope="session")
def keys() -> Keys:
    assertion = generate_private_key()
    return Keys(
        jwt_private=generate_private_key(),
        assertion_private=assertion,
        assertion_public=public_key_text(load_private_key(assertion)),
        identity_token=secrets.token_urlsafe(40),
    )


@dataclass
class Portfolio:
    url: str
    database_url: str
    service: object

    def user(self, *roles: str, api_key: bool = False, **options: object) -> tuple[str, str | None]:
        """Create a user with a unique name; return it and its API key when asked."""
        name = f"user-{uuid.uuid4().hex[:10]}"
        self.service.create_user(name, PASSWORD, roles=list(roles), **options)
        key = None
        if api_key:
            key = self.service.rotate_api_key(name, secrets.token_hex(32)).api_key
        return name, key


@pytest.fixture(scope="session")
def portfolio(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portfolio]:
    """A real portfolio (identity) process on a fresh PostgreSQL database."""
    from services.portfolio.config import PortfolioSettings
    from services.portfolio.identity import PortfolioIdentityService

    log = tmp_path_factory.mktemp("portfolio") / "portfolio.log"
    with postgres_database() as database_url:
        settings = PortfolioSettings(
            database_url=database_url,
            password_rotation_days=90,
            argon2_time_cost=1,
            argon2_memory_cost=8,
            argon2_parallelism=1,
        )
        service = PortfolioIdentityService(settings=settings)
        env = {
            **keys.env(),
            **FAST_ARGON2,
            "PORTFOLIO_DATABASE_URL": database_url,
            "PORTFOLIO_PASSWORD_ROTATION_DAYS": "90",
        }
        try:
            with ServerProcess("services.portfolio.app:app", env=env, log_path=log) as process:
                yield Portfolio(url=process.url, database_url=database_url, service=service)
        finally:
            service.close()


@pytest.fixture
def restartable_identity(
    keys: Keys, portfolio: Portfolio, tmp_path: Path
) -> Iterator[ServerProcess]:
    """A second identity process on the portfolio's database, for a test to stop and start
    again (an identity-store outage) without touching the shared one."""
    env = {**keys.env(), **FAST_ARGON2, "PORTFOLIO_DATABASE_URL": portfolio.database_url}
    process = ServerProcess(
        "services.portfolio.app:app", env=env, log_path=tmp_path / "identity.log"
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def upstream(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real downstream server that verifies assertions and echoes what it received."""
    log = tmp_path_factory.mktemp("upstream") / "upstream.log"
    env = {"TEST_ASSERTION_PUBLIC_KEY": keys.assertion_public}
    with ServerProcess("tests.api_gateway.upstream:app", env=env, log_path=log) as process:
        yield process.url


@pytest.fixture
def access_log(tmp_path: Path) -> Path:
    return tmp_path / "access.log"


@pytest.fixture
def make_settings(upstream: str, access_log: Path):
    """Build gateway settings: every service (identity included) at the test upstream."""

    def build(**overrides: object) -> Settings:
        values: dict[str, object] = {
            f"{service.value}_service_url": f"{upstream}/{service.value}" for service in SERVICES
        }
        values["gateway_access_log"] = str(access_log)
        # The identity change feed runs in the background and drops cached API keys of users
        # the test just changed; only the sync tests turn it on.
        values["gateway_identity_sync_seconds"] = 0
        # Likewise the state journal (it reads and writes the identity store); only the
        # restart tests turn it on.
        values["gateway_state_journal_seconds"] = 0
        values.update(overrides)
        return Settings(**values)

    return build


@dataclass
class Gateway:
    client: httpx.AsyncClient
    runtime: Runtime

    def bearer(self, username: str, *roles: str) -> dict[str, str]:
        """Return headers with a real token for a user (as if they had logged in)."""
        issued = self.runtime.tokens.issue(username=username, roles=roles)
        return {"Authorization": f"Bearer {issued.token}"}


@asynccontextmanager
async def running_gateway(
    settings: Settings, secrets: GatewaySecrets, client: tuple[str, int] = ("127.0.0.1", 50000)
) -> AsyncIterator[Gateway]:
    """Run the gateway app in this process, lifespan included."""
    app = create_app(settings, secrets)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield Gateway(client=http, runtime=app.state.runtime)


@pytest.fixture
async def gateway(make_settings, keys: Keys) -> AsyncIterator[Gateway]:
    """A gateway whose services all point at the test upstream (no identity service)."""
    async with running_gateway(make_settings(), keys.secrets()) as running:
        yield running


@pytest.fixture
async def identity_gateway(
    make_settings, keys: Keys, portfolio: Portfolio
) -> AsyncIterator[Gateway]:
    """A gateway talking to the real identity service."""
    settings = make_settings(portfolio_service_url=portfolio.url)
    async with running_gateway(settings, keys.secrets()) as running:
        yield running
