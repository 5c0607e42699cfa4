import pytest
from pydantic import SecretStr

from services.frontend.sessions import CookieSigner, MemorySessionStore, Session, csrf_matches
from tests.frontend.conftest import SESSION_SECRET, Clock


@pytest.fixture
def store(clock: Clock) -> MemorySessionStore:
    return MemorySessionStore(idle_timeout=60, lifetime=600, clock=clock)


async def signed_in(store: MemorySessionStore, token: str = "gateway-jwt") -> Session:
    session = await store.create()
    session.hold(
        access_token=token,
        token_expires_at=0.0,
        username="alice",
        roles=("portfolio",),
        services=("portfolio",),
    )
    await store.save(session)
    return session


class TestCreate:
    async def test_a_new_session_has_random_url_safe_id_and_csrf_token(self, store):
        first, second = await store.create(), await store.create()
        assert first.id != second.id
        assert first.csrf_token != second.csrf_token
        assert len(first.id) >= 43  # 32 random bytes, base64url
        assert first.id.replace("-", "").replace("_", "").isalnum()

    async def test_a_new_session_is_anonymous(self, store):
        session = await store.create()
        assert not session.is_authenticated
        with pytest.raises(ValueError, match="no gateway token"):
            session.bearer()

    async def test_the_oldest_sessions_give_way_beyond_the_limit(self, clock):
        store = MemorySessionStore(idle_timeout=60, lifetime=600, max_sessions=2, clock=clock)
        oldest = await store.create()
        await store.create()
        await store.create()
        assert len(store) == 2
        assert await store.get(oldest.id) is None

    async def test_anonymous_sessions_give_way_before_signed_in_ones(self, clock):
        store = MemorySessionStore(idle_timeout=60, lifetime=600, max_sessions=2, clock=clock)
        user = await signed_in(store)
        anonymous = await store.create()
        for _ in range(5):  # a flood of login page loads
            await store.create()
        assert await store.get(user.id) is not None
        assert await store.get(anonymous.id) is None


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
        ],
        ids=["changed-id", "changed-signature", "no-signature", "empty", "dot-only"],
    )
    def test_a_tampered_cookie_is_refused(self, tamper):
        signer = CookieSigner(SESSION_SECRET)
        assert signer.unsign(tamper(signer.sign("abcdef-session"))) is None

    def test_a_cookie_signed_with_another_secret_is_refused(self):
        other = CookieSigner(SecretStr("another-secret-of-at-least-32-bytes!"))
        assert CookieSigner(SESSION_SECRET).unsign(other.sign("abc")) is None


class TestCsrf:
    async def test_the_session_token_matches(self, store):
        session = await store.create()
        assert csrf_matches(session, session.csrf_token)

    @pytest.mark.parametrize("submitted", [None, "", "wrong", "x" * 43])
    async def test_anything_else_does_not(self, store, submitted):
        session = await store.create()
        assert not csrf_matches(session, submitted)

    async def test_another_sessions_token_does_not(self, store):
        mine, theirs = await store.create(), await store.create()
        assert not csrf_matches(mine, theirs.csrf_token)
