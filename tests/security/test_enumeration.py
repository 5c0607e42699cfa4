"""Username enumeration: an unknown user and a wrong password read the same, and cost the
same hashing work (counted, not timed)."""

import contextlib
import threading
import uuid

import argon2
import httpx
import pytest

from services.portfolio.errors import InvalidCredentialsError
from tests.security.conftest import PASSWORD

WRONG = "certainly not the password"


def answer(response: httpx.Response) -> tuple[int, object, str | None]:
    return response.status_code, response.json(), response.headers.get("www-authenticate")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/auth/token", lambda user: {"username": user, "password": WRONG}),
        (
            "/auth/password/rotate",
            lambda user: {
                "username": user,
                "current_password": WRONG,
                "new_password": "a brand new long password 42",
            },
        ),
    ],
)
def test_unknown_user_wrong_password_and_inactive_user_read_the_same(stack, path, body):
    known, _ = stack.user("trading")
    inactive, _ = stack.user("trading")
    stack.identity.deactivate_user(inactive)
    with httpx.Client(base_url=stack.gateway_url) as client:
        answers = {
            who: answer(client.post(path, json=body(user)))
            for who, user in (
                ("known", known),
                ("unknown", f"nobody-{uuid.uuid4().hex[:8]}"),
                ("inactive", inactive),
            )
        }
    assert answers["known"][0] == 401
    assert answers["unknown"] == answers["known"]
    assert answers["inactive"] == answers["known"]


class Argon2Work:
    """Count Argon2 computations (hash or verify) in every thread of this process."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self._lock = threading.Lock()
        for name in ("hash", "verify"):
            original = getattr(argon2.PasswordHasher, name)
            monkeypatch.setattr(argon2.PasswordHasher, name, self._counting(original))

    def _counting(self, original):
        def counted(hasher, *args, **kwargs):
            with self._lock:
                self.count += 1
            return original(hasher, *args, **kwargs)

        return counted

    def around(self, action) -> int:
        before = self.count
        with contextlib.suppress(InvalidCredentialsError):
            action()
        return self.count - before


def test_unknown_and_known_users_cost_the_same_hashing_work(stack, monkeypatch):
    known, _ = stack.user("trading")
    work = Argon2Work(monkeypatch)
    spent = {
        "known user, wrong password": work.around(
            lambda: stack.identity.authenticate(known, WRONG)
        ),
        "unknown user": work.around(
            lambda: stack.identity.authenticate(f"nobody-{uuid.uuid4().hex[:8]}", WRONG)
        ),
        "malformed username": work.around(lambda: stack.identity.authenticate(" \x00 bad", WRONG)),
    }
    assert set(spent.values()) == {1}, spent
    assert work.around(lambda: stack.identity.authenticate(known, PASSWORD)) == 1
