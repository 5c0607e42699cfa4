"""The login throttle: 5 failures, then a doubling refusal capped at 15 minutes."""

from datetime import timedelta

import pytest

from services.portfolio.errors import InvalidCredentialsError, TooManyAttemptsError
from services.portfolio.passwords import PasswordHasher
from services.portfolio.service import IdentityService
from services.portfolio.throttle import Throttle
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
