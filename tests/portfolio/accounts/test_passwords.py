"""Password hashing: Argon2id, legacy bcrypt verified and upgraded at the next login."""

import os
import secrets
import string
import threading
from collections.abc import Callable
from typing import ClassVar

import anyio
import anyio.to_thread
import bcrypt
import pytest
from prometheus_client import REGISTRY

from services.portfolio.accounts import store
from services.portfolio.accounts.passwords import (
    HashingSlots,
    PasswordHasher,
    check_password_policy,
    one_time_password,
)
from services.portfolio.errors import IdentityBusyError, InvalidCredentialsError, WeakPasswordError
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


def random_password(length: int) -> str:
    """A strong, random-looking password of exactly `length` characters."""
    alphabet = string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~"
    return "".join(secrets.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize("length", [12, 13, 1023, 1024])
def test_policy_accepts_a_length_from_12_to_1024_characters(sqlite_url, length):
    password = random_password(length)
    assert len(password) == length
    check_password_policy(password, make_settings(sqlite_url))


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (11, "the password must be at least 12 characters long"),
        (1, "the password must be at least 12 characters long"),
        (1025, "the password must be at most 1024 characters long"),
        (4000, "the password must be at most 1024 characters long"),
    ],
)
def test_policy_refuses_a_length_below_12_or_above_1024(sqlite_url, length, message):
    with pytest.raises(WeakPasswordError) as refused:
        check_password_policy(random_password(length), make_settings(sqlite_url))
    assert str(refused.value) == message


@pytest.mark.parametrize(
    "control", ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f"]
)
def test_policy_refuses_nul_and_every_other_control_character(sqlite_url, control):
    settings = make_settings(sqlite_url)
    password = f"a long passphrase{control}here"
    with pytest.raises(WeakPasswordError, match="control character") as refused:
        check_password_policy(password, settings)
    assert password not in str(refused.value)


async def test_a_control_character_is_refused_when_creating_and_rotating(identity):
    with pytest.raises(WeakPasswordError, match="control character"):
        await identity.create_user("alice", "a long passphrase\x00", ["portfolio"])
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    with pytest.raises(WeakPasswordError, match="control character"):
        await identity.rotate_password("alice", PASSWORD, "a new long\x00passphrase")
    assert (await identity.authenticate("alice", PASSWORD)).username == "alice"


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


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is Linux's")
async def test_slots_leave_the_priority_alone_unless_asked():
    # Neither nicer nor, where the process may raise it, more urgent than the process.
    base = os.getpriority(os.PRIO_PROCESS, 0)
    slots = HashingSlots(size=1, queue=0, max_wait=1)
    assert await slots.run(os.getpriority, os.PRIO_PROCESS, 0) == base
    assert (
        await slots.run(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())) == base
    )


# Bounded hashing: slots, a short queue, a quick refusal past it


class Gate:
    """Blocking jobs held on their worker threads until released: at the latest when the test
    leaves the gate (`async with group, gate:`), so a test that fails while jobs are held, as
    under a broken slot count, ends at once instead of after the jobs' own time limit."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.release = threading.Event()

    def job(self, value: int) -> int:
        self.started.release()
        self.release.wait(timeout=30)
        return value

    async def wait_started(self, count: int) -> None:
        for _ in range(count):
            assert await anyio.to_thread.run_sync(self.started.acquire, True, 10)

    async def __aenter__(self) -> "Gate":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release.set()


async def until(check: Callable[[], bool]) -> None:
    """Wait for `check()` to hold; fail after 10 s (a broken slot count never gets there)."""
    with anyio.fail_after(10):
        while not check():
            await anyio.sleep(0.01)


async def test_slots_run_a_bounded_number_queue_a_few_and_refuse_the_rest_at_once():
    slots = HashingSlots(size=2, queue=1, max_wait=30)
    gate = Gate()
    async with anyio.create_task_group() as group, gate:
        results: list[int] = []

        async def run(value: int) -> None:
            results.append(await slots.run(gate.job, value))

        for value in (1, 2, 3):
            group.start_soon(run, value)
        await gate.wait_started(2)
        await until(lambda: slots.waiting >= 1)
        with anyio.fail_after(5):  # refused at once, not after max_wait
            with pytest.raises(IdentityBusyError) as caught:
                await slots.run(gate.job, 4)
        assert caught.value.retry_after == 30
        gate.release.set()
    assert sorted(results) == [1, 2, 3]


async def test_each_run_gives_back_exactly_one_slot_so_the_bound_holds_after_many():
    slots = HashingSlots(size=2, queue=4, max_wait=30)
    # At once: a slot not given back would keep the third caller waiting the 30 s.
    with anyio.fail_after(5):
        for value in range(5):
            assert await slots.run(int, str(value)) == value
    assert (slots.running, slots.waiting) == (0, 0)
    gate = Gate()
    async with anyio.create_task_group() as group, gate:
        for value in (1, 2, 3):
            group.start_soon(slots.run, gate.job, value)
        await gate.wait_started(2)
        await until(lambda: slots.waiting >= 1)
        assert (slots.running, slots.waiting) == (2, 1)
        gate.release.set()
    assert (slots.running, slots.waiting) == (0, 0)


async def test_running_and_waiting_count_the_slots_taken_and_the_callers_queued():
    # Four slots: with three, `size ^ free` would equal `size - free` at every count.
    slots = HashingSlots(size=4, queue=4, max_wait=30)
    gate = Gate()
    async with anyio.create_task_group() as group, gate:
        for started, expected in ((1, (1, 0)), (2, (2, 0)), (3, (3, 0)), (4, (4, 0))):
            group.start_soon(slots.run, gate.job, started)
            await gate.wait_started(1)
            assert (slots.running, slots.waiting) == expected
        group.start_soon(slots.run, gate.job, 5)
        group.start_soon(slots.run, gate.job, 6)
        await until(lambda: slots.waiting >= 2)
        assert (slots.running, slots.waiting) == (4, 2)
        gate.release.set()
    assert (slots.running, slots.waiting) == (0, 0)


async def test_hashes_run_on_threads_named_for_them():
    # What a thread dump (py-spy, /proc) shows: the hashing threads stand apart.
    slots = HashingSlots(size=2, queue=0, max_wait=1)
    name = await slots.run(lambda: threading.current_thread().name)
    assert name.startswith("password-hashing_")


async def test_a_queued_caller_waits_at_most_max_wait():
    slots = HashingSlots(size=1, queue=4, max_wait=0.2)
    gate = Gate()
    async with anyio.create_task_group() as group, gate:
        group.start_soon(slots.run, gate.job, 1)
        await gate.wait_started(1)
        with pytest.raises(IdentityBusyError) as caught:
            await slots.run(gate.job, 2)
        assert caught.value.retry_after == 1
        assert slots.waiting == 0
        gate.release.set()
    # The slot came back: the next caller runs at once.
    assert await slots.run(gate.job, 3) == 3


async def test_a_cancelled_waiter_leaves_no_slot_behind():
    slots = HashingSlots(size=1, queue=4, max_wait=30)
    gate = Gate()
    async with anyio.create_task_group() as group, gate:
        group.start_soon(slots.run, gate.job, 1)
        await gate.wait_started(1)
        with anyio.move_on_after(0.1):
            await slots.run(gate.job, 2)
        assert slots.waiting == 0
        gate.release.set()
    with anyio.fail_after(5):  # at once, not after the 30 s
        assert await slots.run(gate.job, 3) == 3


async def test_hashing_leaves_the_default_thread_limiter_to_other_blocking_work(sqlite_url):
    slots = HashingSlots(size=2, queue=0, max_wait=1)
    gate = Gate()
    default = anyio.to_thread.current_default_thread_limiter()
    async with anyio.create_task_group() as group, gate:
        group.start_soon(slots.run, gate.job, 1)
        group.start_soon(slots.run, gate.job, 2)
        await gate.wait_started(2)
        # Blocked hashes hold none of the default tokens the app's sync dependencies use.
        assert default.borrowed_tokens == 0
        assert await anyio.to_thread.run_sync(lambda: 7) == 7
        gate.release.set()


@pytest.mark.parametrize(
    ("memory_kib", "parallelism", "cores", "slots"),
    [
        (65536, 4, 2, 1),  # the default cost on two cores: one run fills them
        (65536, 4, 16, 4),  # memory-bound: 4 x 64 MiB fill the 256 MiB budget
        (65536, 1, 64, 4),
        (1024, 1, 8, 8),  # cheap hashes: core-bound
        (1024 * 1024, 1, 8, 1),  # one run over the budget still runs, alone
    ],
)
def test_slots_default_to_what_the_cores_and_memory_budget_carry(
    sqlite_url, monkeypatch, memory_kib, parallelism, cores, slots
):
    monkeypatch.setattr("services.portfolio.config._cores", lambda: cores)
    settings = make_settings(
        sqlite_url, argon2_memory_cost=memory_kib, argon2_parallelism=parallelism
    )
    assert settings.hashing_slots() == slots
    assert make_settings(sqlite_url, hashing_concurrency=3).hashing_slots() == 3


async def test_every_password_check_takes_a_slot(sqlite_url):
    hasher = PasswordHasher(make_settings(sqlite_url, hashing_concurrency=1, hashing_queue=0))
    gate = Gate()
    async with anyio.create_task_group() as group, gate:
        group.start_soon(hasher.slots.run, gate.job, 1)
        await gate.wait_started(1)
        for check in (
            hasher.hash(PASSWORD),
            hasher.verify(PASSWORD, "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"),
            hasher.verify_dummy(PASSWORD),
        ):
            with pytest.raises(IdentityBusyError):
                await check
        gate.release.set()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread priority is Linux's")
async def test_hashes_run_at_a_lower_priority_than_the_rest_of_the_process(sqlite_url):
    hasher = PasswordHasher(make_settings(sqlite_url, hashing_niceness=10))

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    base = niceness()
    assert await hasher.slots.run(niceness) == max(base, 10)
    assert niceness() == base
    assert await anyio.to_thread.run_sync(niceness) == base
    plain = PasswordHasher(make_settings(sqlite_url, hashing_niceness=0))
    assert await plain.slots.run(niceness) == base


def test_one_time_passwords_are_24_characters_of_each_kind_from_the_whole_alphabet():
    alphabet = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!")
    drawn = [one_time_password() for _ in range(300)]
    for password in drawn:
        assert len(password) == 24
        assert set(password) <= alphabet
        assert any(c.islower() for c in password)
        assert any(c.isupper() for c in password)
        assert any(c.isdigit() for c in password)
        assert set(password) & set("-_.!")
    # 7200 draws from 66 characters: every one turns up (a narrowed alphabet is weaker).
    assert set("".join(drawn)) == alphabet
    assert len(set(drawn)) == 300


def test_a_one_time_password_never_contains_the_username_in_any_case():
    # About half of all draws hold an `a` or an `A`: without the check some of these would.
    for _ in range(60):
        assert "a" not in one_time_password(avoid="A").casefold()
    drawn = [one_time_password(avoid="") for _ in range(60)]
    assert any("a" in password.casefold() for password in drawn)


# The policy (ASVS V6.2): length, no username, no product name, zxcvbn score 3 or more.


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("aaaaaaaaaaaa", "too easy to guess (strength 0 of 4, at least 3 needed): repeats"),
        ("password1234", "too easy to guess (strength 1 of 4, at least 3 needed)"),
        ("Xq7#mK2!pL9", "at least 12 characters"),
        ("x" * 1025, "at most 1024 characters"),
        ("my LegacyCoinTrader login 77", "must not contain the product name"),
    ],
)
def test_policy_refuses_and_names_the_rule(sqlite_url, password, rule):
    with pytest.raises(WeakPasswordError) as refused:
        check_password_policy(password, make_settings(sqlite_url))
    assert rule in str(refused.value)
    assert password not in str(refused.value)


_FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


@pytest.mark.parametrize(
    "password",
    [
        "Legacy-Coin-Trader velvet 9x",
        "velvet legacy coin trader 9x",
        "quasar LEGACY_coin.trader",
        "legacy coin trader oxbow".translate(_FULL_WIDTH),
    ],
)
def test_the_product_name_spelt_with_separators_is_refused(sqlite_url, password):
    with pytest.raises(WeakPasswordError, match="must not contain the product name"):
        check_password_policy(password, make_settings(sqlite_url))


@pytest.mark.parametrize(
    "password",
    [
        "Xq7#mK2!pL9v",  # exactly 12
        "velvet quasar mandolin oxbow",
        "ünïcödé pässwörd",
        # exactly 1024: the estimator judges the first 72 characters, the rest is kept.
        "velvet quasar mandolin oxbow " + "z" * 995,
    ],
)
def test_policy_accepts_strong_passwords_from_12_to_1024_characters(sqlite_url, password):
    check_password_policy(password, make_settings(sqlite_url))


def test_the_boundaries_are_12_and_1024_characters():
    assert len("Xq7#mK2!pL9v") == 12
    assert len("velvet quasar mandolin oxbow " + "z" * 995) == 1024


def test_the_estimator_judges_every_one_of_the_first_72_characters(sqlite_url):
    # Strong only by its 72nd character: judged on its first 71, it is refused.
    settings = make_settings(sqlite_url)
    check_password_policy("a" * 67 + "eszyc", settings)
    with pytest.raises(WeakPasswordError, match=r"strength 2 of 4"):
        check_password_policy("a" * 67 + "eszy", settings)


@pytest.mark.parametrize("password", ["legacylegacy2024x", "tradertrader2024x", "coincoin2024x"])
def test_the_words_of_the_product_name_count_as_known_words(sqlite_url, password):
    # Each scores 3 (accepted) for an estimator that does not know its word: a password
    # made of the product's name parts is among the first tried against it.
    with pytest.raises(WeakPasswordError, match="too easy to guess"):
        check_password_policy(password, make_settings(sqlite_url))


@pytest.mark.parametrize(
    ("password", "username"), [("xalbroz-77-k", "zorblax"), ("fr0bn1tz2024", "frobnitz")]
)
def test_the_username_reversed_or_in_leet_counts_as_a_known_word(sqlite_url, password, username):
    # Not the username itself (that rule is separate), but the estimator's variations of it.
    settings = make_settings(sqlite_url)
    check_password_policy(password, settings, username="someone-else")
    with pytest.raises(WeakPasswordError, match="too easy to guess"):
        check_password_policy(password, settings, username=username)


@pytest.mark.parametrize("name", ["alice", "ALICE", "Alice"])
def test_policy_refuses_a_password_containing_the_username_in_any_case(sqlite_url, name):
    with pytest.raises(WeakPasswordError, match="must not contain the username"):
        check_password_policy(
            f"velvet quasar {name} mandolin", make_settings(sqlite_url), username="alice"
        )


def test_a_stricter_minimum_score_is_allowed_a_weaker_one_is_not(sqlite_url):
    with pytest.raises(ValueError, match="password_min_score"):
        make_settings(sqlite_url, password_min_score=2)
    strict = make_settings(sqlite_url, password_min_score=4)
    assert strict.password_min_score == 4


async def test_create_and_rotate_apply_the_policy_with_the_username(identity):
    with pytest.raises(WeakPasswordError, match="too easy to guess"):
        await identity.create_user("alice", "aaaaaaaaaaaa", ["admin"])
    with pytest.raises(WeakPasswordError, match="must not contain the username"):
        await identity.create_user("alice", "velvet alice quasar mandolin", ["portfolio"])
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    with pytest.raises(WeakPasswordError, match="must not contain the username"):
        await identity.rotate_password("alice", PASSWORD, "Alice velvet quasar mandolin")
    with pytest.raises(WeakPasswordError, match="too easy to guess"):
        await identity.rotate_password("alice", PASSWORD, "aaaaaaaaaaaa")
    rotated = await identity.rotate_password("alice", PASSWORD, "velvet quasar mandolin oxbow")
    assert rotated.username == "alice"


async def test_the_strength_estimate_runs_off_the_event_loop(identity, monkeypatch):
    from services.portfolio.accounts import passwords

    threads: list[str] = []
    real = passwords.zxcvbn

    def spy(password, user_inputs=None):
        threads.append(threading.current_thread().name)
        return real(password, user_inputs=user_inputs)

    monkeypatch.setattr(passwords, "zxcvbn", spy)
    await identity.create_user("alice", PASSWORD, ["portfolio"])
    assert threads
    assert threading.main_thread().name not in threads


def _sample(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_the_metrics_show_hashes_running_waiting_and_refused():
    slots = HashingSlots(size=2, queue=1, max_wait=0.3)
    refused_before = _sample("portfolio_password_hashes_refused_total")
    timed_before = _sample("portfolio_password_hash_duration_seconds_count")
    gate = Gate()
    outcomes: list[str] = []

    async def run(value: int) -> None:
        try:
            await slots.run(gate.job, value)
        except IdentityBusyError:
            outcomes.append("refused")
        else:
            outcomes.append("hashed")

    async with anyio.create_task_group() as group, gate:
        for value in (1, 2, 3):
            group.start_soon(run, value)
        await gate.wait_started(2)
        await until(lambda: slots.waiting >= 1)
        assert _sample("portfolio_password_hashes_running") == 2
        assert _sample("portfolio_password_hashes_waiting") == 1
        with pytest.raises(IdentityBusyError):  # the queue is full: refused at once
            await slots.run(gate.job, 4)
        assert _sample("portfolio_password_hashes_refused_total") - refused_before == 1
        # The queued caller waits past max_wait: refused too.
        await until(lambda: slots.waiting == 0)
        assert _sample("portfolio_password_hashes_refused_total") - refused_before == 2
        assert _sample("portfolio_password_hashes_waiting") == 0
        gate.release.set()
    assert sorted(outcomes) == ["hashed", "hashed", "refused"]
    assert _sample("portfolio_password_hashes_running") == 0
    assert _sample("portfolio_password_hash_duration_seconds_count") - timed_before == 2
