"""The stack's first-admin step: the identity store's command, and one line when it fails."""

from __future__ import annotations

import os

from devstack.admin import create_first_admin
from devstack.ports import free_port
from services.portfolio.__main__ import ONE_TIME_PASSWORD_LABEL
from tests.devstack.conftest import FAST_HASHING


def environment(database_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PORTFOLIO_", "SECRETS_"))}
    return {
        **base,
        **FAST_HASHING,
        "SECRETS_PROVIDER": "env",
        "PORTFOLIO_DATABASE_URL": database_url,
    }


def test_a_new_database_gets_the_admin_and_the_login_address(sqlite_url):
    lines = create_first_admin(environment(sqlite_url), "http://127.0.0.1:8080/", timeout=60)
    assert lines[0] == "new database: created user 'admin' with roles ['admin']"
    assert ONE_TIME_PASSWORD_LABEL in lines[1]
    assert lines[2].startswith("  log in at http://127.0.0.1:8080/ and choose a new password")
    again = create_first_admin(environment(sqlite_url), "http://127.0.0.1:8080/", timeout=60)
    assert again == ["the database already has 1 user(s); no admin user created"]


def test_an_unreachable_database_is_one_line_without_the_password():
    url = f"postgresql+asyncpg://nobody:sekrit@127.0.0.1:{free_port()}/x"
    env = {**environment(url), "PORTFOLIO_DATABASE_CONNECT_TIMEOUT": "2"}
    lines = create_first_admin(env, "http://127.0.0.1:8080/", timeout=60)
    assert len(lines) == 1
    assert lines[0].startswith("could not create the first admin user: cannot reach the PostgreSQL")
    assert "sekrit" not in lines[0]
