"""Password hashing: Argon2id, legacy bcrypt verified and upgraded at the next login."""

import threading
from typing import ClassVar

import bcrypt
import pytest

from services.portfolio import store
from services.portfolio.errors import InvalidCredentialsError, WeakPasswordError
from services.portfolio.passwords import PasswordHasher, check_password_policy
from tests.portfolio.conftest import PASSWORD, make_settings


@pytest.fixture
def hasher(sqlite_url):
    return PasswordHasher(make_settings(sqlite_url))


async def test_hashes_are_argon2id_with_the_configured_cost(hasher):
    hashed = await hasher.hash(PASSWORD)
    assert hashed.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert await hasher.verify(PASSWORD, hashed) == (True, None)
    assert (await hasher.verify("wrong password!!", hashed))[0] is False


async def test_same_password_hashes_differently_each_time(hasher):
    assert await hasher.hash(PASSWORD) != await hasher.hash(PASSWORD)


async def test_a_hash_with_weaker_parameters_is_upgraded(sqlite_url):
    weak = PasswordHasher(make_settings(sqlite_url, argon2_memory_cost=512))
    strong = PasswordHasher(make_settings(sqlite_url))
    valid, new_hash = await strong.verify(PASSWORD, await weak.hash(PASSWORD))
    assert valid
    assert new_hash is not None
    assert "$m=1024,t=1,p=1$" in new_hash


async def test_garbage_hash_is_no_match(hasher):
    assert await hasher.verify(PASSWORD, "not-a-hash") == (False, None)


def test_policy_refuses_whitespace_only_and_invalid_unicode(sqlite_url):
    settings = make_settings(sqlite_url)
    with pytest.raises(WeakPasswordError, match="whitespace"):
        check_password_policy(" " * 20, settings)
    with pytest.raises(WeakPasswordError, match="Unicode"):
        check_password_policy("abc\ud800defghijklmn", settings)
    check_password_policy("ünïcödé pässwörd", settings)


async def test_bcrypt_hash_verifies_and_is_rehashed_to_argon2id_at_login(identity, database):
    await identity.create_user("legacy", "placeholder password", ["portfolio"])
    legacy_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with database.sessions.begin() as session:
        await store.update_user(session, "legacy", password_hash=legacy_hash)

    assert (await identity.authenticate("legacy", PASSWORD)).username == "legacy"

    async with database.sessions() as session:
        account = await store.get_user(session, "legacy")
    assert account is not None
    assert account.password_hash.startswith("$argon2id$")
    assert (await identity.authenticate("legacy", PASSWORD)).username == "legacy"


async def test_wrong_password_against_bcrypt_hash_keeps_it(identity, database):
    await identity.create_user("legacy2", "placeholder password", ["portfolio"])
    legacy_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with database.sessions.begin() as session:
        await store.update_user(session, "legacy2", password_hash=legacy_hash)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("legacy2", "wrong password here")
    async with database.sessions() as session:
        account = await store.get_user(session, "legacy2")
    assert account is not None
    assert account.password_hash == legacy_hash


async def test_password_longer_than_bcrypts_72_bytes_is_no_match_not_a_crash(identity, database):
    await identity.create_user("legacy3", "placeholder password", ["portfolio"])
    legacy_hash = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    async with database.sessions.begin() as session:
        await store.update_user(session, "legacy3", password_hash=legacy_hash)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("legacy3", PASSWORD + "x" * 100)


async def test_passwords_are_checked_off_the_event_loop(sqlite_url):
    class ThreadRecordingHasher(PasswordHasher):
        threads: ClassVar[list[int]] = []

        def _verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
            self.threads.append(threading.get_ident())
            return super()._verify(password, stored_hash)

        def _dummy_check(self, password: str) -> None:
            self.threads.append(threading.get_ident())
            super()._dummy_check(password)

    hasher = ThreadRecordingHasher(make_settings(sqlite_url))
    await hasher.verify(PASSWORD, await hasher.hash(PASSWORD))
    await hasher.verify_dummy(PASSWORD)
    assert len(hasher.threads) == 2
    assert threading.get_ident() not in hasher.threads
