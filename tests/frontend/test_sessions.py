from dataclasses import replace

import pytest
from pydantic import SecretStr

from services.frontend.sessions import (
    CookieSigner,
    DerivedKeys,
    MemorySessionStore,
    Session,
    csrf_matches,
)
from tests.frontend.conftest import SESSION_SECRET, Clock


@pytest.fixture
def store(clock: Clock) -> MemorySessionStore:
    return MemorySessionStore(idle_timeout=60, lifetime=600, clock=clock)


async def signed_in(
    store: MemorySessionStore, token: str = "gateway-jwt", username: str = "alice"
) -> Session:
    return await store.create(
        username=username,
        access_token=token,
        token_expires_at=0.0,
        roles=("portfolio",),
        services=("portfolio",),
    )


def small_store(clock: Clock, *, total: int = 10000, per_user: int = 5) -> MemorySessionStore:
    return MemorySessionStore(
        idle_timeout=60,
        lifetime=600,
        max_sessions=total,
        max_sessions_per_user=per_user,
        clock=clock,
    )


class TestCreate:
    async def test_a_new_session_has_random_url_safe_id_and_csrf_token(self, store):
        first, second = await signed_in(store), await signed_in(store)
        assert first.id != second.id
        assert first.csrf_token != second.csrf_token
        assert len(first.id) >= 43  # 32 random bytes, base64url
        assert first.id.replace("-", "").replace("_", "").isalnum()

    async def test_a_new_session_holds_the_users_token(self, store):
        session = await signed_in(store, token="the-gateway-jwt")
        assert session.is_authenticated is True
        assert replace(session, access_token=None).is_authenticated is False
        assert session.bearer() == "the-gateway-jwt"
        assert (await store.get(session.id)).username == "alice"

    async def test_the_least_recently_used_give_way_beyond_the_limit(self, clock):
        store = small_store(clock, total=2)
        oldest = await signed_in(store, username="alice")
        used = await signed_in(store, username="bob")
        clock.advance(1)
        await store.save(oldest, touch=True)  # alice's is now the most recently used
        newest = await signed_in(store, username="carol")
        assert len(store) == 2
        assert await store.get(used.id) is None
        assert await store.get(oldest.id) is not None
        assert await store.get(newest.id) is not None

    async def test_the_session_being_created_never_gives_way(self, clock):
        store = small_store(clock, total=3, per_user=100)
        for n in range(20):  # one user signing in over and over fills the store
            await signed_in(store, username="heavy", token=f"jwt-{n}")
            clock.advance(1)
        newest = await signed_in(store, username="victim")
        assert len(store) == 3
        assert await store.get(newest.id) is not None

    async def test_a_user_holds_at_most_the_per_user_cap_the_oldest_ending_first(self, clock):
        store = small_store(clock, per_user=2)
        other = await signed_in(store, username="bob")
        first = await signed_in(store, username="alice")
        clock.advance(1)
        second = await signed_in(store, username="alice")
        clock.advance(1)
        await store.save(first, touch=True)  # recent use does not save the oldest sign-in
        third = await signed_in(store, username="alice")
        assert await store.get(first.id) is None
        assert await store.get(second.id) is not None
        assert await store.get(third.id) is not None
        assert await store.get(other.id) is not None, "another user's session stays"

    async def test_an_ended_session_frees_its_place_in_the_users_count(self, clock):
        store = small_store(clock, per_user=2)
        first = await signed_in(store)
        await store.delete((await signed_in(store)).id)
        second = await signed_in(store)
        assert await store.get(first.id) is not None, "the deleted session freed its place"
        clock.advance(60)  # both idle out
        third, fourth = await signed_in(store), await signed_in(store)
        assert await store.get(second.id) is None
        assert await store.get(third.id) is not None
        assert await store.get(fourth.id) is not None
        assert len(store) == 2

    async def test_saving_cannot_move_a_session_to_another_user(self, clock):
        store = small_store(clock, per_user=1)
        session = await signed_in(store, username="alice")
        session.username = "mallory"
        await store.save(session)
        assert (await store.get(session.id)).username == "alice"
        newest = await signed_in(store, username="alice")
        assert await store.get(session.id) is None
        assert await store.get(newest.id) is not None

    async def test_ending_one_session_keeps_the_users_others_counted(self, clock):
        store = small_store(clock, per_user=3)
        first = await signed_in(store)
        clock.advance(1)
        second = await signed_in(store)
        clock.advance(1)
        third = await signed_in(store)
        await store.delete(first.id)  # second and third still count against the cap
        clock.advance(1)
        await signed_in(store)
        clock.advance(1)
        await signed_in(store)  # the fourth live one: the oldest, second, ends
        assert await store.get(second.id) is None
        assert await store.get(third.id) is not None


class TestIdleTimeout:
    async def test_a_session_lives_until_the_idle_timeout(self, store, clock):
        session = await signed_in(store)
        clock.advance(59)
        assert await store.get(session.id) is not None

    async def test_a_session_idle_for_the_timeout_is_gone(self, store, clock):
        session = await signed_in(store)
        clock.advance(60)
        assert await store.get(session.id) is None
        clock.advance(-60)
        assert await store.get(session.id) is None, "an expired session must not come back"

    async def test_activity_pushes_the_idle_deadline_back(self, store, clock):
        session = await signed_in(store)
        clock.advance(50)
        await store.save(session, touch=True)
        clock.advance(50)
        assert await store.get(session.id) is not None

    async def test_a_session_idle_past_the_timeout_is_gone(self, store, clock):
        session = await signed_in(store)
        clock.advance(61)
        assert await store.get(session.id) is None

    async def test_saving_is_activity_by_default(self, store, clock):
        session = await signed_in(store)
        clock.advance(50)
        await store.save(session)
        clock.advance(50)
        assert await store.get(session.id) is not None

    async def test_saving_without_touch_is_not_activity(self, store, clock):
        session = await signed_in(store)
        clock.advance(50)
        await store.save(session, touch=False)
        clock.advance(10)
        assert await store.get(session.id) is None

    async def test_the_idle_deadline_is_last_activity_plus_timeout(self, store, clock):
        session = await signed_in(store)
        assert store.idle_deadline(session) == clock.now + 60


class TestAbsoluteLifetime:
    async def test_a_busy_session_still_ends_at_its_lifetime(self, store, clock):
        session = await signed_in(store)
        for _ in range(10):
            clock.advance(59)
            live = await store.get(session.id)
            assert live is not None
            await store.save(live, touch=True)
        clock.advance(10)  # 600 s after creation
        assert await store.get(session.id) is None

    async def test_the_deadline_never_passes_the_lifetime(self, store, clock):
        session = await signed_in(store)
        clock.advance(590)
        await store.save(session, touch=True)
        assert store.idle_deadline(session) == session.created_at + 600


class TestSaveAndDelete:
    async def test_changes_count_only_once_saved(self, store):
        session = await signed_in(store)
        session.flash = "hello"
        assert (await store.get(session.id)).flash is None
        await store.save(session)
        assert (await store.get(session.id)).flash == "hello"

    async def test_a_deleted_session_is_gone_and_saving_does_not_revive_it(self, store):
        session = await signed_in(store)
        await store.delete(session.id)
        await store.save(session)
        assert await store.get(session.id) is None

    async def test_deleting_an_unknown_or_already_deleted_session_does_nothing(self, store):
        session = await signed_in(store)
        await store.delete(session.id)
        await store.delete(session.id)
        await store.delete("no-such-session")
        assert await store.count() == 0

    async def test_an_unknown_id_has_no_session(self, store):
        assert await store.get("no-such-session") is None

    async def test_the_flash_message_is_shown_once(self, store):
        session = await signed_in(store)
        session.flash = "Saved."
        assert session.pop_flash() == "Saved."
        assert session.pop_flash() is None


class TestSecrecy:
    async def test_the_repr_shows_neither_token_nor_csrf_token(self, store):
        session = await signed_in(store, token="very-secret-gateway-jwt")
        text = repr(session)
        assert "very-secret-gateway-jwt" not in text
        assert session.csrf_token not in text
        assert session.bearer() == "very-secret-gateway-jwt"


class TestCookieSigner:
    def test_a_signed_id_reads_back(self):
        signer = CookieSigner(SESSION_SECRET)
        assert signer.unsign(signer.sign("abc")) == "abc"

    def test_the_cookie_carries_only_the_id_and_its_signature(self):
        value = CookieSigner(SESSION_SECRET).sign("session-id")
        session_id, _signature = value.rsplit(".", 1)
        assert session_id == "session-id"
        assert SESSION_SECRET.get_secret_value() not in value

    @pytest.mark.parametrize(
        "tamper",
        [
            lambda v: "other" + v[5:],
            lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),
            lambda v: v.split(".")[0],
            lambda v: "",
            lambda v: ".",
            lambda v: v[:-2] + "éé",
        ],
        ids=["changed-id", "changed-signature", "no-signature", "empty", "dot-only", "non-ascii"],
    )
    def test_a_tampered_cookie_is_refused(self, tamper):
        signer = CookieSigner(SESSION_SECRET)
        assert signer.unsign(tamper(signer.sign("abcdef-session"))) is None

    def test_a_cookie_signed_with_another_secret_is_refused(self):
        other = CookieSigner(SecretStr("another-secret-of-at-least-32-bytes!"))
        assert CookieSigner(SESSION_SECRET).unsign(other.sign("abc")) is None


class TestCsrf:
    async def test_the_session_token_matches(self, store):
        session = await signed_in(store)
        assert csrf_matches(session, session.csrf_token)

    @pytest.mark.parametrize("submitted", [None, "", "wrong", "x" * 43, "é" * 43])
    async def test_anything_else_does_not(self, store, submitted):
        session = await signed_in(store)
        assert not csrf_matches(session, submitted)

    async def test_another_sessions_token_does_not(self, store):
        mine, theirs = await signed_in(store), await signed_in(store)
        assert not csrf_matches(mine, theirs.csrf_token)


class TestDerivedKeys:
    def test_a_rotated_secret_verifies_at_once_and_signs_from_its_activation(self, clock):
        keys = DerivedKeys(SecretStr("first secret " * 3), b"purpose", clock=clock)
        first = keys.current
        keys.rotate(SecretStr("second secret " * 3), activate_at=clock.now + 10)
        assert keys.current == first
        assert len(keys.verifying()) == 2
        clock.advance(10)
        second = keys.current
        assert second != first
        assert keys.verifying() == (second, first)

    def test_a_rotation_first_used_after_its_activation_signs_at_once(self, clock):
        # Nothing signed at the activation instant itself: the next signature, later, is
        # the new key's.
        keys = DerivedKeys(SecretStr("first secret " * 3), b"purpose", clock=clock)
        first = keys.current
        keys.rotate(SecretStr("second secret " * 3), activate_at=clock.now + 10)
        clock.advance(25)
        second = DerivedKeys(SecretStr("second secret " * 3), b"purpose", clock=clock).current
        assert keys.current == second
        assert keys.verifying() == (second, first)

    def test_rotating_to_the_current_secret_changes_nothing(self, clock):
        keys = DerivedKeys(SecretStr("first secret " * 3), b"purpose", clock=clock)
        first = keys.current
        keys.rotate(SecretStr("first secret " * 3), activate_at=0.0)
        assert keys.verifying() == (first,)

    def test_a_second_rotation_before_the_first_activates_replaces_it(self, clock):
        keys = DerivedKeys(SecretStr("first secret " * 3), b"purpose", clock=clock)
        first = keys.current
        keys.rotate(SecretStr("second secret " * 3), activate_at=clock.now + 10)
        keys.rotate(SecretStr("third secret " * 3), activate_at=clock.now + 20)
        third = DerivedKeys(SecretStr("third secret " * 3), b"purpose", clock=clock).current
        assert keys.verifying() == (first, third)
        # The same rotation seen again keeps its first activation time.
        keys.rotate(SecretStr("third secret " * 3), activate_at=clock.now + 99)
        clock.advance(20)
        assert keys.current == third
