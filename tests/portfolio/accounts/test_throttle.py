"""The login throttle: 5 failures, then a doubling refusal capped at 15 minutes."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.portfolio.accounts.passwords import PasswordHasher
from services.portfolio.accounts.service import IdentityService
from services.portfolio.accounts.throttle import Throttle, UnknownNameThrottle
from services.portfolio.errors import InvalidCredentialsError, TooManyAttemptsError
from tests.portfolio.conftest import PASSWORD, env_secrets

WRONG = "definitely the wrong one"


class CountingHasher(PasswordHasher):
    """The real hasher, counting how many passwords it checked."""

    checks = 0

    def _verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        self.checks += 1
        return super()._verify(password, stored_hash)

    def _dummy_check(self, password: str) -> None:
        self.checks += 1
        super()._dummy_check(password)


async def fail(identity, username: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(InvalidCredentialsError):
            await identity.authenticate(username, WRONG)


def test_delay_doubles_from_the_fifth_failure_and_is_capped():
    throttle = Throttle(threshold=5, base_seconds=30, max_seconds=900)
    assert [throttle.delay(n) for n in range(5)] == [None] * 5
    delays = [throttle.delay(n) for n in range(5, 12)]
    assert delays == [timedelta(seconds=s) for s in (30, 60, 120, 240, 480, 900, 900)]
    assert throttle.delay(10_000) == timedelta(minutes=15)


def test_unknown_names_table_is_bounded_and_forgets_the_oldest_name_first():
    # One failure refuses a name for a minute, so "still tracked" is "refused now".
    names = UnknownNameThrottle(Throttle(threshold=1, base_seconds=60, max_seconds=60), capacity=3)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for name in ["oldest", "second", "third", "newest"]:
        assert names.reserve(name, now) is None
    refused_until = now + timedelta(seconds=60)
    # Junk names push out the oldest entry, never the one just added.
    assert names.reserve("newest", now) == refused_until
    assert names.reserve("third", now) == refused_until
    assert names.reserve("second", now) == refused_until
    assert names.reserve("oldest", now) is None


def test_a_refused_name_stays_the_newest_entry():
    names = UnknownNameThrottle(Throttle(threshold=1, base_seconds=60, max_seconds=60), capacity=2)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert names.reserve("victim", now) is None
    assert names.reserve("junk-1", now) is None
    # Asking about the victim again (refused) makes it the most recent entry...
    assert names.reserve("victim", now) == now + timedelta(seconds=60)
    # ...so the next junk name pushes out junk-1, not the victim.
    assert names.reserve("junk-2", now) is None
    assert names.reserve("victim", now) == now + timedelta(seconds=60)
    assert names.reserve("junk-1", now) is None


def test_an_unknown_name_is_refused_until_its_refusal_ends_and_no_longer():
    names = UnknownNameThrottle(Throttle(threshold=1, base_seconds=60, max_seconds=60), capacity=10)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert names.reserve("ghost", start) is None
    assert names.reserve("ghost", start + timedelta(seconds=59)) == start + timedelta(seconds=60)
    # At the very end of the refusal the name may be tried again (and is refused anew).
    assert names.reserve("ghost", start + timedelta(seconds=60)) is None
    assert names.reserve("ghost", start + timedelta(seconds=61)) == start + timedelta(seconds=120)
    assert names.reserve("ghost", start + timedelta(seconds=500)) is None


async def test_fifth_failure_throttles_even_the_right_password(identity, clock):
    await identity.create_user("alice", PASSWORD, ["trading"])
    await fail(identity, "alice", 5)
    with pytest.raises(TooManyAttemptsError) as caught:
        await identity.authenticate("alice", PASSWORD)
    assert caught.value.retry_after == 30
    clock.advance(seconds=29)
    with pytest.raises(TooManyAttemptsError) as caught:
        await identity.authenticate("alice", PASSWORD)
    assert caught.value.retry_after == 1
    clock.advance(seconds=1)
    assert (await identity.authenticate("alice", PASSWORD)).username == "alice"


async def test_password_is_not_checked_while_throttled(database, settings, clock):
    hasher = CountingHasher(settings)
    identity = IdentityService(
        database, settings, secrets_manager=env_secrets(), clock=clock, hasher=hasher
    )
    await identity.create_user("bob", PASSWORD, ["trading"])
    await fail(identity, "bob", 5)
    checked = hasher.checks
    for _ in range(3):
        with pytest.raises(TooManyAttemptsError):
            await identity.authenticate("bob", WRONG)
    assert hasher.checks == checked


async def test_each_further_failure_doubles_the_wait_up_to_15_minutes(identity, clock):
    await identity.create_user("carol", PASSWORD, ["trading"])
    await fail(identity, "carol", 5)
    waits = []
    for _ in range(7):
        with pytest.raises(TooManyAttemptsError) as caught:
            await identity.authenticate("carol", WRONG)
        waits.append(caught.value.retry_after)
        clock.advance(seconds=caught.value.retry_after)
        await fail(identity, "carol", 1)
    assert waits == [30, 60, 120, 240, 480, 900, 900]


async def test_a_victim_waits_at_most_15_minutes(identity, clock):
    await identity.create_user("dave", PASSWORD, ["trading"])
    refusals = []
    for _ in range(40):
        # The attacker tries again the moment each refusal ends.
        with pytest.raises(TooManyAttemptsError) as caught:
            await fail_until_throttled(identity, "dave")
        refusals.append(caught.value.retry_after)
        clock.advance(seconds=caught.value.retry_after)
    assert max(refusals) == 900
    clock.advance(minutes=15)
    assert (await identity.authenticate("dave", PASSWORD)).username == "dave"


async def fail_until_throttled(identity, username: str) -> None:
    for _ in range(10):
        try:
            await identity.authenticate(username, WRONG)
        except InvalidCredentialsError:
            continue
    pytest.fail("never throttled")


async def test_success_resets_the_count(identity, clock):
    await identity.create_user("erin", PASSWORD, ["trading"])
    await fail(identity, "erin", 4)
    await identity.authenticate("erin", PASSWORD)
    await fail(identity, "erin", 4)
    assert (await identity.authenticate("erin", PASSWORD)).username == "erin"


async def test_throttle_is_per_account(identity):
    await identity.create_user("frank", PASSWORD, ["trading"])
    await identity.create_user("grace", PASSWORD, ["trading"])
    await fail(identity, "frank", 5)
    with pytest.raises(TooManyAttemptsError):
        await identity.authenticate("frank", PASSWORD)
    assert (await identity.authenticate("grace", PASSWORD)).username == "grace"


async def test_unknown_usernames_are_throttled_like_real_ones(identity):
    # Otherwise a 429 after five tries would tell an attacker which names exist.
    await fail(identity, "nobody", 5)
    with pytest.raises(TooManyAttemptsError) as caught:
        await identity.authenticate("nobody", PASSWORD)
    assert caught.value.retry_after == 30


async def test_unknown_user_costs_one_password_check_like_a_real_one(database, settings, clock):
    hasher = CountingHasher(settings)
    identity = IdentityService(
        database, settings, secrets_manager=env_secrets(), clock=clock, hasher=hasher
    )
    await identity.create_user("heidi", PASSWORD, ["trading"])
    before = hasher.checks
    await fail(identity, "heidi", 1)
    real = hasher.checks - before
    before = hasher.checks
    await fail(identity, "not-a-user", 1)
    assert hasher.checks - before == real == 1


async def test_password_rotation_counts_failures_too(identity):
    await identity.create_user("ivan", PASSWORD, ["trading"])
    for _ in range(5):
        with pytest.raises(InvalidCredentialsError):
            await identity.rotate_password("ivan", WRONG, "a brand new passphrase")
    with pytest.raises(TooManyAttemptsError):
        await identity.rotate_password("ivan", PASSWORD, "a brand new passphrase")


GUESSES = 40
NEW_PASSWORD = "a brand new passphrase"


def counting_identity(database, settings, clock) -> tuple[IdentityService, CountingHasher]:
    hasher = CountingHasher(settings)
    identity = IdentityService(
        database, settings, secrets_manager=env_secrets(), clock=clock, hasher=hasher
    )
    return identity, hasher


async def guess_at_once(identity, operation: str, username: str, passwords: list[str]) -> list:
    if operation == "login":
        calls = [identity.authenticate(username, password) for password in passwords]
    else:
        calls = [
            identity.rotate_password(username, password, NEW_PASSWORD) for password in passwords
        ]
    return await asyncio.gather(*calls, return_exceptions=True)


@pytest.mark.parametrize("operation", ["login", "rotate"])
async def test_concurrent_guesses_check_at_most_the_threshold_of_passwords(
    database, settings, clock, operation
):
    identity, hasher = counting_identity(database, settings, clock)
    await identity.create_user("judy", PASSWORD, ["trading"])
    before = hasher.checks
    results = await guess_at_once(identity, operation, "judy", [WRONG] * GUESSES)
    checked = hasher.checks - before
    refused = [r for r in results if isinstance(r, TooManyAttemptsError)]
    assert checked <= settings.login_throttle_threshold
    assert len(refused) == GUESSES - checked
    assert all(r.retry_after >= 1 for r in refused)
    # The guesses that were checked used up the account: even the right password waits.
    with pytest.raises(TooManyAttemptsError):
        await identity.authenticate("judy", PASSWORD)


async def test_concurrent_guesses_at_an_unknown_name_are_throttled_like_a_real_one(
    database, settings, clock
):
    identity, hasher = counting_identity(database, settings, clock)
    before = hasher.checks
    results = await guess_at_once(identity, "login", "nobody-here", [WRONG] * GUESSES)
    checked = hasher.checks - before
    refused = [r for r in results if isinstance(r, TooManyAttemptsError)]
    assert checked <= settings.login_throttle_threshold
    assert len(refused) == GUESSES - checked


async def test_a_right_password_among_concurrent_guesses_clears_the_count(
    database, settings, clock
):
    identity, _ = counting_identity(database, settings, clock)
    await identity.create_user("kim", PASSWORD, ["trading"])
    results = await guess_at_once(identity, "login", "kim", [PASSWORD] * 3)
    assert [r.username for r in results] == ["kim"] * 3
    # Three reservations, three successes: nothing is left counted against the account.
    await fail(identity, "kim", settings.login_throttle_threshold - 1)
    assert (await identity.authenticate("kim", PASSWORD)).username == "kim"
