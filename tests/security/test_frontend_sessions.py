"""Nobody can stop other people signing in at the frontend: loading the login page holds no
state, one user's sign-ins are capped, and a full session store never drops the session being
made. The login form's signed pass must be genuine, unexpired and the form's own.

Each test starts its own frontend process (real uvicorn on loopback) with a small session
store, in front of the suite's gateway.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from pydantic import SecretStr

from devstack.servers import ServerProcess
from services.frontend.csrf import FormPassSigner
from services.frontend.sessions import COOKIE_NAME
from tests.security.conftest import PASSWORD, Stack

FRONTEND_APP = "services.frontend.app:app"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# Requests against one process on a shared machine: generous, never a timing assertion.
TIMEOUT = httpx.Timeout(30.0)


@contextmanager
def frontend(stack: Stack, secret: str | None = None, **security: str) -> Iterator[str]:
    """Run the frontend as a process in front of the suite's gateway; yield its URL."""
    env = {
        "SECRETS_PROVIDER": "env",
        "SESSION_SECRET_KEY": secret or secrets.token_urlsafe(48),
        "GATEWAY_URL": stack.gateway_url,
        "SECURITY__COOKIE_SECURE": "false",  # plain HTTP on loopback
        **{f"SECURITY__{name.upper()}": value for name, value in security.items()},
    }
    log = stack.logs / f"frontend-{secrets.token_hex(3)}.log"
    with ServerProcess(FRONTEND_APP, env=env, log_path=log) as server:
        yield server.url


def browser(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=TIMEOUT)


def form_token(client: httpx.Client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    match = CSRF_FIELD.search(page.text)
    assert match, "the login page has no CSRF field"
    return match.group(1)


def post_login(client: httpx.Client, username: str, token: str) -> httpx.Response:
    data = {"username": username, "password": PASSWORD, "csrf_token": token}
    return client.post("/login", data=data)


def sign_in(client: httpx.Client, username: str) -> httpx.Response:
    return post_login(client, username, form_token(client))


def assert_signed_in(client: httpx.Client, response: httpx.Response, username: str) -> None:
    assert response.status_code == 303, response.text[:300]
    assert response.headers["location"] == "/dashboard"
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200
    assert username in dashboard.text


def test_loading_the_login_page_thousands_of_times_does_not_stop_a_sign_in(stack):
    victim, _ = stack.user("trading")
    with frontend(stack, max_sessions="100") as url, browser(url) as person, browser(url) as bot:
        token = form_token(person)  # the person opens the form ...
        for _ in range(2000):  # ... and someone loads it over and over meanwhile
            bot.cookies.clear()
            assert bot.get("/login").status_code == 200
        assert_signed_in(person, post_login(person, victim, token), victim)


@pytest.mark.parametrize("per_user", ["3", "1000"], ids=["per-user-cap", "store-full"])
def test_one_user_signing_in_over_and_over_does_not_stop_another(stack, per_user):
    heavy, _ = stack.user("trading")
    victim, _ = stack.user("trading")
    with frontend(stack, max_sessions="10", max_sessions_per_user=per_user) as url:
        for _ in range(30):
            with browser(url) as client:
                assert_signed_in(client, sign_in(client, heavy), heavy)
        # The store is full of signed-in sessions (or holds the heavy user's newest few):
        # the next person's form still works, and so does their session.
        with browser(url) as person:
            assert_signed_in(person, sign_in(person, victim), victim)
            assert person.get("/dashboard").status_code == 200


def test_a_users_oldest_session_ends_beyond_the_per_user_cap(stack):
    name, _ = stack.user("trading")
    with frontend(stack, max_sessions_per_user="3") as url:
        clients = [browser(url) for _ in range(4)]
        try:
            for client in clients:
                assert_signed_in(client, sign_in(client, name), name)
            oldest = clients[0].get("/dashboard")
            assert oldest.status_code == 303
            assert oldest.headers["location"] == "/login?expired=1"
            for client in clients[1:]:
                assert client.get("/dashboard").status_code == 200
        finally:
            for client in clients:
                client.close()


@pytest.fixture(scope="module")
def frontend_with_known_secret(stack: Stack) -> Iterator[tuple[str, str]]:
    """One frontend for the form pass tests, and the session secret it signs with."""
    secret = secrets.token_urlsafe(48)
    with frontend(stack, secret=secret) as url:
        yield url, secret


def forged(value: str) -> str:
    payload, _, signature = value.rpartition(".")
    return f"{payload}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


@pytest.mark.parametrize(
    "kind", ["genuine", "forged", "foreign", "expired", "another-forms-token", "made-up"]
)
def test_the_login_form_pass_must_be_genuine_fresh_and_its_own(
    stack, frontend_with_known_secret, kind
):
    name, _ = stack.user("trading")
    url, secret = frontend_with_known_secret
    own = FormPassSigner(SecretStr(secret), lifetime=600)
    an_hour_ago = FormPassSigner(SecretStr(secret), lifetime=600, clock=lambda: time.time() - 3600)
    other_frontend = FormPassSigner(SecretStr(secrets.token_urlsafe(48)), lifetime=600)
    issued = own.issue()  # the form's token is its nonce; the cookie varies
    cookie = {
        "genuine": own.sign(issued),
        "forged": forged(own.sign(issued)),
        "foreign": other_frontend.sign(issued),
        "expired": an_hour_ago.sign(an_hour_ago.renew(issued)),
        "another-forms-token": own.sign(own.issue()),
        "made-up": "made-up-value.made-up-signature",
    }[kind]
    token = issued.nonce
    with browser(url) as client:
        response = client.post(
            "/login",
            data={"username": name, "password": PASSWORD, "csrf_token": token},
            headers={"Cookie": f"{COOKIE_NAME}={cookie}"},
        )
        if kind == "genuine":
            assert response.status_code == 303
            assert response.headers["location"] == "/dashboard"
            return
        assert "set-cookie" not in response.headers, "no session was started"
        if kind == "another-forms-token":
            assert response.status_code == 403
            assert "login form expired" in response.text
        else:
            assert response.status_code == 303
            assert response.headers["location"] == "/login?form_expired=1"
