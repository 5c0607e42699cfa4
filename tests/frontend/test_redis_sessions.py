"""Sessions in Redis (`FRONTEND_SESSION_URL`): the store against the real Redis."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import SecretStr

from devstack.databases import SHARED_REDIS_URL, shared_prefix
from services.frontend.csrf import FormPassSigner
from services.frontend.errors import SessionStoreUnavailable
from services.frontend.redis_sessions import RedisSessionStore, TokenCipher, session_digest
from services.frontend.runtime import ACTIVATION_MARGIN_SECONDS, session_secret_watcher
from services.frontend.sessions import CookieSigner
from shared.secrets import SecretsManager, SecretsSettings
from shared.secrets.envfile import write_env_values
from tests.support.redis_server import RedisServer

SECRET = SecretStr("s" * 48)
TOKEN = "eyJhbGciOiJFZERTQSJ9.the-gateway-token.signature"


class Clock:
    """Wall time the test moves forward; it starts now, since Redis expires keys by its own."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(clock: Clock) -> AsyncIterator[RedisSessionStore]:
    with shared_prefix() as prefix:
        sessions = RedisSessionStore(
            SHARED_REDIS_URL,
            secret=SECRET,
            idle_timeout=600,
            lifetime=3600,
            max_sessions_per_user=3,
            prefix=prefix,
            clock=clock,
        )
        sessions.prefix_for_test = prefix  # type: ignore[attr-defined]
        try:
            yield sessions
        finally:
            await sessions.close()


def raw() -> redis.Redis:
    return redis.Redis.from_url(SHARED_REDIS_URL, decode_responses=True)


async def sign_in(store: RedisSessionStore, username: str = "alice"):
    return await store.create(
        username=username,
        access_token=TOKEN,
        token_expires_at=2_000_000.0,
        roles=("portfolio", "trading"),
        services=("portfolio", "trading"),
        flash="welcome",
    )


async def test_a_session_reads_back_as_it_was_made(store):
    made = await sign_in(store)
    read = await store.get(made.id)
    assert read is not None
    assert read.username == "alice"
    assert read.bearer() == TOKEN
    assert read.csrf_token == made.csrf_token
    assert read.roles == ("portfolio", "trading")
    assert read.services == ("portfolio", "trading")
    assert read.pop_flash() == "welcome"
    assert read.token_expires_at == 2_000_000.0


async def test_redis_holds_neither_the_session_id_nor_the_token(store):
    made = await sign_in(store)
    with raw() as client:
        keys = list(client.scan_iter(match=store.prefix_for_test + "*"))
        dump = repr(keys) + "".join(repr(client.hgetall(key)) for key in keys if "session:" in key)
    assert made.id not in dump
    assert TOKEN not in dump
    assert "the-gateway-token" not in dump
    assert any(session_digest(made.id) in key for key in keys)


async def test_a_token_sealed_for_one_session_does_not_open_in_another():
    cipher = TokenCipher(SECRET)
    sealed = cipher.encrypt(TOKEN, bound_to="session-a")
    assert cipher.decrypt(sealed, bound_to="session-a") == TOKEN
    assert cipher.decrypt(sealed, bound_to="session-b") is None
    assert TokenCipher(SecretStr("t" * 48)).decrypt(sealed, bound_to="session-a") is None
    assert cipher.decrypt("not base64 at all!", bound_to="session-a") is None


async def test_a_store_with_another_secret_cannot_use_the_sessions(store, clock):
    made = await sign_in(store)
    other = RedisSessionStore(
        SHARED_REDIS_URL,
        secret=SecretStr("o" * 48),
        idle_timeout=600,
        lifetime=3600,
        prefix=store.prefix_for_test,
        clock=clock,
    )
    try:
        assert await other.get(made.id) is None
    finally:
        await other.close()


async def test_an_idle_session_ends_and_activity_keeps_it(store, clock):
    made = await sign_in(store)
    clock.now += 500
    session = await store.get(made.id)
    assert session is not None
    await store.save(session, touch=True)
    clock.now += 500  # 1000 s after sign-in, 500 s after the last activity
    assert await store.get(made.id) is not None
    clock.now += 600
    assert await store.get(made.id) is None


async def test_redis_expires_the_session_at_its_idle_deadline(store, clock):
    made = await sign_in(store)
    key = f"{store.prefix_for_test}session:{session_digest(made.id)}"
    with raw() as client:
        assert 590_000 <= client.pttl(key) <= 600_000
        clock.now += 300
        session = await store.get(made.id)
        assert session is not None
        await store.save(session, touch=True)
        assert 890_000 <= client.pttl(key) <= 900_000


async def test_background_reads_do_not_extend_the_session(store, clock):
    made = await sign_in(store)
    clock.now += 500
    session = await store.get(made.id)
    assert session is not None
    await store.save(session, touch=False)
    clock.now += 200
    assert await store.get(made.id) is None


async def test_the_absolute_lifetime_ends_a_busy_session(store, clock):
    made = await sign_in(store)
    for _ in range(7):
        clock.now += 500
        session = await store.get(made.id)
        assert session is not None
        await store.save(session)
    clock.now += 500  # 4000 s after sign-in, used every 500 s
    assert await store.get(made.id) is None


async def test_a_deleted_session_stays_gone_when_another_replica_saves_it(store):
    made = await sign_in(store)
    held_elsewhere = await store.get(made.id)
    assert held_elsewhere is not None
    await store.delete(made.id)
    await store.save(held_elsewhere, touch=True)
    assert await store.get(made.id) is None


async def test_concurrent_sign_ins_of_one_user_keep_the_newest_within_the_cap(store, clock):
    made = []
    for _ in range(2):
        made.append(await sign_in(store, "bob"))
        clock.now += 1
    other = await sign_in(store, "carol")
    burst = await asyncio.gather(*(sign_in(store, "bob") for _ in range(20)))
    alive = [s for s in [*made, *burst] if await store.get(s.id) is not None]
    assert len(alive) == 3
    assert not {s.id for s in made} & {s.id for s in alive}
    assert await store.get(other.id) is not None


async def test_a_session_that_ended_does_not_count_against_the_cap(store, clock):
    first = await sign_in(store, "dave")
    second = await sign_in(store, "dave")
    await store.delete(second.id)
    await sign_in(store, "dave")
    await sign_in(store, "dave")
    assert await store.get(first.id) is not None


async def test_an_unreachable_redis_is_a_clear_error_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    server = RedisServer(tmp_path).start()
    sessions = RedisSessionStore(
        server.url, secret=SECRET, idle_timeout=600, lifetime=3600, timeout=0.5
    )
    try:
        made = await sign_in(sessions)
        server.stop()
        with caplog.at_level(logging.WARNING, logger="services.frontend.redis_sessions"):
            for _ in range(3):
                with pytest.raises(SessionStoreUnavailable):
                    await sessions.get(made.id)
            with pytest.raises(SessionStoreUnavailable):
                await sign_in(sessions)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert "cannot be reached" in errors[0].getMessage()
        assert made.id not in caplog.text
    finally:
        server.stop()
        await sessions.close()


async def bearer_of(store: RedisSessionStore, session_id: str) -> str | None:
    session = await store.get(session_id)
    return session.bearer() if session is not None else None


class TestSessionSecretRotation:
    """A rotated SESSION_SECRET_KEY mid-session: tokens sealed before still open, new ones
    are sealed with the new secret."""

    def other_store(self, secret: str, prefix: str, clock: Clock) -> RedisSessionStore:
        return RedisSessionStore(
            SHARED_REDIS_URL,
            secret=SecretStr(secret),
            idle_timeout=600,
            lifetime=3600,
            prefix=prefix,
            clock=clock,
        )

    async def test_a_watched_rotation_keeps_open_sessions_and_seals_new_ones_anew(
        self, tmp_path: Path, clock: Clock
    ):
        first, second, third = (secrets.token_urlsafe(48) for _ in range(3))
        env_file = tmp_path / ".env"
        env_file.write_text(f"SESSION_SECRET_KEY={first}\n")
        manager = SecretsManager(
            settings=SecretsSettings(
                secrets_provider="env", secrets_env_file=env_file, secrets_cache_ttl_seconds=1
            ),
            environ={},
        )
        with shared_prefix() as prefix:
            store = self.other_store(first, prefix, clock)
            only_first = self.other_store(first, prefix, clock)
            only_second = self.other_store(second, prefix, clock)
            cookies = CookieSigner(SecretStr(first))
            forms = FormPassSigner(SecretStr(first), lifetime=600)
            watcher = session_secret_watcher(manager, cookies, forms, cipher=store.cipher)
            try:
                await watcher.prime()
                before = await sign_in(store, "alice")
                untouched = await sign_in(store, "carol")

                write_env_values(env_file, {"SESSION_SECRET_KEY": second})
                assert await watcher.poll() is True
                assert await bearer_of(store, before.id) == TOKEN
                # Past the activation (1 s interval + 2 s): new sessions use the new secret.
                clock.now = time.time() + 1 + ACTIVATION_MARGIN_SECONDS + 0.5
                after = await sign_in(store, "bob")
                assert await bearer_of(only_second, after.id) == TOKEN
                assert await only_first.get(after.id) is None
                # The session from before, used again, is sealed with the new secret too.
                read = await store.get(before.id)
                assert read is not None
                await store.save(read)
                assert await bearer_of(only_second, before.id) == TOKEN
                assert await bearer_of(store, untouched.id) == TOKEN

                # One rotation later, what only the first secret sealed opens no more.
                write_env_values(env_file, {"SESSION_SECRET_KEY": third})
                assert await watcher.poll() is True
                clock.now = time.time() + 1 + ACTIVATION_MARGIN_SECONDS + 0.5
                assert await store.get(untouched.id) is None
                assert await bearer_of(store, after.id) == TOKEN
            finally:
                for each in (store, only_first, only_second):
                    await each.close()

    async def test_a_rotated_key_opens_at_once_but_seals_only_from_its_activation(self, clock):
        cipher = TokenCipher(SECRET, clock=clock)
        new = SecretStr("n" * 48)
        cipher.rotate(new, activate_at=clock.now + 10)
        sealed_elsewhere = TokenCipher(new).encrypt(TOKEN, bound_to="s")
        assert cipher.decrypt(sealed_elsewhere, bound_to="s") == TOKEN
        sealed_here = cipher.encrypt(TOKEN, bound_to="s")
        assert TokenCipher(SECRET).decrypt(sealed_here, bound_to="s") == TOKEN
        clock.now += 10
        assert TokenCipher(new).decrypt(cipher.encrypt(TOKEN, bound_to="s"), bound_to="s") == TOKEN
        assert cipher.decrypt(sealed_here, bound_to="s") == TOKEN


async def test_a_frontend_started_after_a_rotation_opens_sessions_of_the_previous_secret(
    store, clock
):
    made = await sign_in(store)  # sealed with SECRET
    restarted = RedisSessionStore(
        SHARED_REDIS_URL,
        secret=SecretStr("n" * 48),
        idle_timeout=600,
        lifetime=3600,
        prefix=store.prefix_for_test,
        clock=clock,
    )
    try:
        assert await restarted.get(made.id) is None
        # SESSION_PREVIOUS_SECRET_KEY, as the runtime hands it over at start-up.
        restarted.cipher.accept_previous(SECRET)
        assert await bearer_of(restarted, made.id) == TOKEN
        restarted.cipher.accept_previous(None)
        assert await restarted.get(made.id) is None
    finally:
        await restarted.close()


def sealed_by_hand(token: str, *, bound_to: str, nonce: bytes) -> str:
    """Seal as the module's docstring says: AES-GCM, a key derived (HKDF-SHA256) from the
    session secret for this one purpose, a 12-byte nonce first, the session's key as data."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"lct-frontend-session-token"
    ).derive(SECRET.get_secret_value().encode())
    sealed = AESGCM(key).encrypt(nonce, token.encode(), bound_to.encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode()


def test_the_sealed_token_format_is_stable_across_frontend_builds():
    # Replicas of two releases share one Redis during a rolling upgrade: each opens the
    # other's tokens only while the format (key purpose, nonce size) stays the same.
    cipher = TokenCipher(SECRET)
    by_hand = sealed_by_hand(TOKEN, bound_to="digest-a", nonce=bytes(range(12)))
    assert cipher.decrypt(by_hand, bound_to="digest-a") == TOKEN
    raw = base64.urlsafe_b64decode(cipher.encrypt(TOKEN, bound_to="digest-a"))
    assert len(raw) == 12 + len(TOKEN) + 16  # nonce, ciphertext, tag
    assert (
        sealed_by_hand(TOKEN, bound_to="digest-a", nonce=raw[:12])
        == base64.urlsafe_b64encode(raw).decode()
    )


async def test_a_session_ends_at_its_exact_idle_deadline(store, clock):
    made = await sign_in(store)
    clock.now = made.created_at + 599.5
    assert await store.get(made.id) is not None
    clock.now = made.created_at + 600
    assert await store.get(made.id) is None


async def test_an_unreadable_stored_session_is_signed_out_and_logged_without_its_id(
    store, caplog: pytest.LogCaptureFixture
):
    made = await sign_in(store)
    key = f"{store.prefix_for_test}session:{session_digest(made.id)}"
    with raw() as client:
        client.hset(key, "data", '{"token": null, "csrf": "c"}')  # fields missing
    with caplog.at_level(logging.WARNING, logger="services.frontend.redis_sessions"):
        assert await store.get(made.id) is None
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "a stored session could not be read; it is treated as signed out"
    )
    assert made.id not in caplog.text


async def test_the_live_session_count_is_this_prefix_s_even_with_glob_characters(clock):
    with shared_prefix() as base:
        globby, lookalike = f"{base}[a]*?:", f"{base}a-other?:"
        stores = [
            RedisSessionStore(
                SHARED_REDIS_URL, secret=SECRET, idle_timeout=600, lifetime=3600, prefix=p
            )
            for p in (globby, lookalike)
        ]
        try:
            for user in ("alice", "bob"):
                await sign_in(stores[0], user)
            for user in ("carol", "dave", "erin"):
                await sign_in(stores[1], user)
            # Unescaped, `[a]*?:session:*` would match the other prefix's sessions too.
            assert await stores[0].count() == 2
            assert await stores[1].count() == 3
        finally:
            for each in stores:
                await each.close()


async def test_counting_with_redis_down_is_the_store_s_clear_error(tmp_path: Path):
    server = RedisServer(tmp_path).start()
    sessions = RedisSessionStore(
        server.url, secret=SECRET, idle_timeout=600, lifetime=3600, timeout=0.5
    )
    try:
        await sign_in(sessions)
        assert await sessions.count() == 1
        server.stop()
        with pytest.raises(SessionStoreUnavailable):
            await sessions.count()
    finally:
        server.stop()
        await sessions.close()
