"""Frontend fixtures: the app in-process with a clock the test moves."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from devstack.ports import free_port
from services.frontend.app import create_app
from services.frontend.config import FrontendSecrets, SecuritySettings, Settings
from services.frontend.csrf import FormPass, FormPassSigner
from services.frontend.sessions import CookieSigner, MemorySessionStore, Session
from tests.frontend.stack import PASSWORD, Stack, start_stack

SESSION_SECRET = SecretStr("test-session-secret-with-32-bytes-or-more")
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class Clock:
    """A clock that moves only when the test says so."""

    def __init__(self) -> None:
        # Starts at the real time: token expiry is judged against the real clock.
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Frontend:
    """The app in-process, its session store and a browser-like client."""

    def __init__(self, app: Any, store: MemorySessionStore, client: httpx.AsyncClient) -> None:
        self.app = app
        self.store = store
        self.client = client

    @property
    def cookie_name(self) -> str:
        return str(self.app.state.runtime.cookie_name)

    def session_id(self) -> str | None:
        value = self.client.cookies.get(self.cookie_name)
        return CookieSigner(SESSION_SECRET).unsign(value) if value else None

    async def signed_in(
        self,
        *,
        username: str = "alice",
        roles: tuple[str, ...] = ("portfolio",),
        token: str = "not-a-real-token",
        token_expires_at: float | None = None,
    ) -> Session:
        """Put a signed-in session straight into the store and give the client its cookie."""
        session = await self.store.create(
            username=username,
            access_token=token,
            token_expires_at=token_expires_at or self.store_now() + 900,
            roles=roles,
            services=roles,
        )
        self.set_cookie(CookieSigner(SESSION_SECRET).sign(session.id))
        return session

    def form_pass(self) -> FormPass | None:
        """Return the signed form pass the client's cookie holds before sign-in."""
        value = self.client.cookies.get(self.cookie_name)
        signer: FormPassSigner = self.app.state.runtime.form_signer
        return signer.unsign(value) if value else None

    def set_cookie(self, value: str) -> None:
        """Set the session cookie as the browser would have stored it."""
        self.client.cookies.set(self.cookie_name, value, domain=self.client.base_url.host)

    def store_now(self) -> float:
        return self.store._clock()

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """Fill in and send the login form."""
        data = {"username": username, "password": password, "csrf_token": await self.csrf()}
        return await self.client.post("/login", data=data)

    async def session(self) -> Session | None:
        """Return the session the client's cookie names."""
        session_id = self.session_id()
        return await self.store.get(session_id) if session_id else None

    async def csrf(self, path: str = "/login") -> str:
        """Load a form page and return its CSRF token."""
        page = await self.client.get(path)
        match = CSRF_FIELD.search(page.text)
        assert match, f"no CSRF field on {path}"
        return match.group(1)


def closed_gateway_url() -> str:
    """A loopback URL where nothing listens: the gateway is down."""
    return f"http://127.0.0.1:{free_port()}"


@asynccontextmanager
async def running_frontend(
    *,
    gateway_url: str | None = None,
    clock: Callable[[], float] | None = None,
    cookie_secure: bool = False,
    session_timeout: int = 1800,
    session_lifetime: int = 43200,
    metrics_token: SecretStr | None = None,
) -> AsyncIterator[Frontend]:
    """Run the frontend in-process (lifespan included) and yield it with a client."""
    settings = Settings(
        gateway_url=gateway_url or closed_gateway_url(),
        security=SecuritySettings(
            cookie_secure=cookie_secure,
            session_timeout=session_timeout,
            session_lifetime=session_lifetime,
        ),
    )
    store = MemorySessionStore(
        idle_timeout=session_timeout, lifetime=session_lifetime, clock=clock or time.time
    )
    secrets = FrontendSecrets(SESSION_SECRET, metrics_scrape_token=metrics_token)
    app = create_app(settings, secrets, session_store=store)
    base_url = "https://frontend.test" if cookie_secure else "http://frontend.test"
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url) as client,
    ):
        yield Frontend(app, store, client)


RunFrontend = Callable[..., AbstractAsyncContextManager[Frontend]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def frontend(clock: Clock) -> AsyncIterator[Frontend]:
    async with running_frontend(clock=clock) as running:
        yield running


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Portfolio, gateway and trading stub as real processes on a fresh PostgreSQL database."""
    running = start_stack(tmp_path_factory.mktemp("stack-logs"))
    try:
        yield running
    finally:
        running.close()


@pytest.fixture
async def live(stack: Stack, clock: Clock) -> AsyncIterator[Frontend]:
    """The frontend in-process, talking to the real gateway."""
    async with running_frontend(gateway_url=stack.gateway_url, clock=clock) as running:
        yield running
