"""The identity store's rules, on SQLite and PostgreSQL."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest

from services.portfolio.accounts import store
from services.portfolio.accounts.passwords import PasswordHasher
from services.portfolio.accounts.service import IdentityService
from services.portfolio.errors import (
    AccountInactiveError,
    ApiKeyInUseError,
    InvalidCredentialsError,
    InvalidInputError,
    PasswordExpiredError,
    TooManyAttemptsError,
    UserExistsError,
    UserNotFoundError,
    WeakPasswordError,
)
from shared.apikeys import digest
from shared.roles import ROLES
from tests.portfolio.conftest import PASSWORD, Clock, env_secrets

NEW_PASSWORD = "another long passphrase"


# Users and roles


async def test_created_user_has_roles_in_given_order_as_plain_strings(identity):
    user = await identity.create_user("security-admin", PASSWORD, ["admin", "portfolio", "trading"])
    assert user.roles == ["admin", "portfolio", "trading"]
    assert str(user.roles) == "['admin', 'portfolio', 'trading']"
    assert all(type(role) is str for role in user.roles)
    assert user.is_active
    assert not user.must_change_password
    assert user.last_login_at is None
    assert user.api_key_id is None


async def test_user_object_never_exposes_a_hash(identity):
    user = await identity.create_user("alice", PASSWORD, ["portfolio"])
    dumped = user.model_dump()
    assert not any("hash" in key for key in dumped)
    assert "argon2" not in repr(user)


@pytest.mark.parametrize("role", [str(role) for role in ROLES])
async def test_every_role_of_the_map_is_accepted(identity, role):
    user = await identity.create_user(f"user-{role}", PASSWORD, [role])
    assert user.roles == [role]


async def test_unknown_role_is_refused_naming_it_and_the_allowed_ones(identity):
    with pytest.raises(InvalidInputError) as caught:
        await identity.create_user("bob", PASSWORD, ["trading", "root"])
    message = str(caught.value)
    assert "'root'" in message
    assert all(str(role) in message for role in ROLES)
    assert await identity.list_users() == []


async def test_duplicate_roles_are_kept_once(identity):
    user = await identity.create_user("bob", PASSWORD, ["trading", "TRADING", "market"])
    assert user.roles == ["trading", "market"]


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("  Security-Admin ", "security-admin"),
        ("\uff21\uff24\uff2d\uff29\uff2e", "admin"),
        ("a.b_c@d-e", "a.b_c@d-e"),
    ],
)
async def test_usernames_are_normalised(identity, given, stored):
    user = await identity.create_user(given, PASSWORD, [])
    assert user.username == stored
    assert (await identity.get_user(stored.upper())).username == stored


@pytest.mark.parametrize("bad", ["ab", "x" * 65, "has space", "semi;colon", "ünï", ""])
async def test_invalid_usernames_are_refused(identity, bad):
    with pytest.raises(InvalidInputError, match="3 to 64 characters"):
        await identity.create_user(bad, PASSWORD, [])


async def test_second_user_with_same_normalised_name_is_refused(identity):
    await identity.create_user("carol", PASSWORD, ["market"])
    with pytest.raises(UserExistsError, match="carol"):
        await identity.create_user(" CAROL", PASSWORD, ["admin"])
    [user] = await identity.list_users()
    assert user.roles == ["market"]


async def test_concurrent_creation_of_one_name_yields_one_user_and_clear_errors(identity):
    names = ["dave", "Dave", " DAVE ", "dave", "dAvE", "dave"]
    results = await asyncio.gather(
        *(identity.create_user(name, PASSWORD, ["trading"]) for name in names),
        return_exceptions=True,
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(created) == 1
    assert len(refused) == len(names) - 1
    assert all(isinstance(r, UserExistsError) for r in refused), refused
    assert [u.username for u in await identity.list_users()] == ["dave"]


async def test_list_users_is_ordered_by_username(identity):
    for name in ["zed", "amy", "mia"]:
        await identity.create_user(name, PASSWORD, ["portfolio"])
    assert [u.username for u in await identity.list_users()] == ["amy", "mia", "zed"]


async def test_set_roles_replaces_them_and_validates(identity, clock):
    created = await identity.create_user("erin", PASSWORD, ["portfolio"])
    clock.advance(minutes=1)
    user = await identity.set_roles("erin", ["market", "strategy"])
    assert user.roles == ["market", "strategy"]
    assert user.updated_at == created.updated_at + timedelta(minutes=1)
    with pytest.raises(InvalidInputError, match="'superuser'"):
        await identity.set_roles("erin", ["superuser"])
    assert (await identity.get_user("erin")).roles == ["market", "strategy"]


async def test_unknown_user_operations_answer_not_found(identity):
    for call in (
        identity.get_user("ghost"),
        identity.deactivate_user("ghost"),
        identity.set_roles("ghost", ["admin"]),
        identity.rotate_api_key("ghost", "k" * 40),
    ):
        with pytest.raises(UserNotFoundError, match="ghost"):
            await call


# Passwords and login


async def test_authenticate_records_the_login(identity, clock):
    await identity.create_user("frank", PASSWORD, ["trading"])
    clock.advance(hours=2)
    user = await identity.authenticate("Frank", PASSWORD)
    assert user.last_login_at == clock.now
    assert (await identity.get_user("frank")).last_login_at == clock.now


async def test_wrong_password_and_unknown_user_get_the_same_error(identity):
    await identity.create_user("grace", PASSWORD, ["trading"])
    with pytest.raises(InvalidCredentialsError) as wrong_password:
        await identity.authenticate("grace", "not the password at all")
    with pytest.raises(InvalidCredentialsError) as unknown_user:
        await identity.authenticate("nobody-here", PASSWORD)
    with pytest.raises(InvalidCredentialsError) as malformed_user:
        await identity.authenticate("no such user!", PASSWORD)
    assert str(wrong_password.value) == str(unknown_user.value) == str(malformed_user.value)


@pytest.mark.parametrize("length", [11, 1025])
async def test_passwords_outside_12_to_1024_characters_are_refused(identity, length):
    with pytest.raises(WeakPasswordError, match="characters"):
        await identity.create_user("heidi", "p" * length, ["trading"])


async def test_long_passwords_are_not_truncated(identity):
    stem = "velvet quasar mandolin oxbow " + "a" * 170
    password = stem + "b"
    await identity.create_user("ivan", password, ["trading"])
    assert (await identity.authenticate("ivan", password)).username == "ivan"
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("ivan", stem + "c")
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("ivan", stem)


async def test_1024_character_password_is_accepted(identity):
    password = "velvet quasar mandolin oxbow " + "x" * 995
    await identity.create_user("judy", password, ["trading"])
    assert (await identity.authenticate("judy", password)).username == "judy"


async def test_password_expires_after_the_rotation_period(identity, clock):
    user = await identity.create_user("mallory", PASSWORD, ["trading"])
    assert user.password_expires_at == clock.now + timedelta(days=90)
    clock.advance(days=89, hours=23)
    await identity.authenticate("mallory", PASSWORD)
    clock.advance(hours=1)
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("mallory", PASSWORD)


async def test_expiry_is_revealed_only_after_the_password_checks_out(identity, clock):
    await identity.create_user("niaj", PASSWORD, ["trading"])
    clock.advance(days=91)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("niaj", "wrong password here")


async def test_rotation_days_zero_disables_expiry(database, settings, clock):
    settings = settings.model_copy(update={"password_rotation_days": 0})
    identity = IdentityService(database, settings, secrets_manager=env_secrets(), clock=clock)
    user = await identity.create_user("olivia", PASSWORD, ["trading"])
    assert user.password_expires_at is None
    clock.advance(days=3650)
    assert (await identity.authenticate("olivia", PASSWORD)).username == "olivia"


async def test_rotating_an_expired_password_lets_the_user_in_again(identity, clock):
    await identity.create_user("peggy", PASSWORD, ["trading"])
    clock.advance(days=100)
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("peggy", PASSWORD)
    user = await identity.rotate_password("peggy", PASSWORD, NEW_PASSWORD)
    assert user.password_changed_at == clock.now
    assert user.password_expires_at == clock.now + timedelta(days=90)
    assert (await identity.authenticate("peggy", NEW_PASSWORD)).username == "peggy"
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("peggy", PASSWORD)


async def test_must_change_password_counts_as_expired_until_rotated(identity):
    user = await identity.create_user("admin", PASSWORD, ["admin"], must_change_password=True)
    assert user.must_change_password
    assert user.password_expires_at == user.password_changed_at
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("admin", PASSWORD)
    rotated = await identity.rotate_password("admin", PASSWORD, NEW_PASSWORD)
    assert not rotated.must_change_password
    assert (await identity.authenticate("admin", NEW_PASSWORD)).username == "admin"


async def test_rotation_refuses_reusing_the_current_password(identity):
    await identity.create_user("quinn", PASSWORD, ["trading"])
    with pytest.raises(WeakPasswordError, match="differ"):
        await identity.rotate_password("quinn", PASSWORD, PASSWORD)


async def test_rotation_refuses_a_weak_new_password(identity):
    await identity.create_user("rupert", PASSWORD, ["trading"])
    with pytest.raises(WeakPasswordError, match="at least 12"):
        await identity.rotate_password("rupert", PASSWORD, "short")
    assert (await identity.authenticate("rupert", PASSWORD)).username == "rupert"


async def test_rotation_needs_the_current_password(identity):
    await identity.create_user("sybil", PASSWORD, ["trading"])
    with pytest.raises(InvalidCredentialsError):
        await identity.rotate_password("sybil", "not the current one", NEW_PASSWORD)
    assert (await identity.authenticate("sybil", PASSWORD)).username == "sybil"


async def test_deactivated_user_cannot_log_in_once_the_password_checks_out(identity):
    await identity.create_user("trent", PASSWORD, ["trading"])
    user = await identity.deactivate_user("trent")
    assert not user.is_active
    with pytest.raises(AccountInactiveError):
        await identity.authenticate("trent", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("trent", "wrong password here")
    with pytest.raises(AccountInactiveError):
        await identity.rotate_password("trent", PASSWORD, NEW_PASSWORD)


class RacingHasher(PasswordHasher):
    """The real hasher, running `race` once right after a password checks out."""

    race: Callable[[], Awaitable[object]] | None = None

    async def verify(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        result = await super().verify(password, stored_hash)
        race, self.race = self.race, None
        if race is not None and result[0]:
            await race()
        return result


@pytest.fixture
def racing(database, settings, clock) -> tuple[IdentityService, RacingHasher]:
    hasher = RacingHasher(settings)
    return IdentityService(
        database, settings, secrets_manager=env_secrets(), clock=clock, hasher=hasher
    ), hasher


async def test_a_login_whose_password_is_rotated_while_it_is_checked_is_refused(
    racing, identity, clock
):
    service, hasher = racing
    await identity.create_user("uma", PASSWORD, ["trading"])

    async def rotate() -> None:
        clock.advance(microseconds=1)  # the same second: precision, not a grace period
        await identity.rotate_password("uma", PASSWORD, NEW_PASSWORD)

    hasher.race = rotate
    with pytest.raises(InvalidCredentialsError):
        await service.authenticate("uma", PASSWORD)
    user = await service.authenticate("uma", NEW_PASSWORD)
    assert user.password_changed_at == clock.now
    assert user.access_changed_at == clock.now


async def test_a_login_whose_account_is_deactivated_while_it_is_checked_is_refused(
    racing, identity
):
    service, hasher = racing
    await identity.create_user("vic", PASSWORD, ["trading"])

    async def deactivate() -> None:
        await identity.deactivate_user("vic")

    hasher.race = deactivate
    with pytest.raises(AccountInactiveError):
        await service.authenticate("vic", PASSWORD)


# API keys


async def test_explicit_api_key_is_stored_as_its_sha256_and_verifies(identity, database):
    key = "k" * 16 + "0123456789abcdef0123"
    await identity.create_user("victor", PASSWORD, ["market"])
    result = await identity.rotate_api_key("victor", key)
    assert result.api_key == key
    assert result.user.api_key_id == digest(key)[:16]
    assert result.stored_at is None
    assert not result.generated
    async with database.sessions() as session:
        account = await store.get_user(session, "victor")
    assert account is not None
    assert account.api_key_hash == digest(key)
    assert key not in (account.api_key_hash, account.api_key_id)
    verified = await identity.verify_api_key(key)
    assert verified.username == "victor"
    assert verified.api_key_id == result.user.api_key_id


async def test_rotation_result_repr_hides_the_key(identity):
    await identity.create_user("walter", PASSWORD, ["market"])
    result = await identity.rotate_api_key("walter")
    assert result.api_key not in repr(result)


async def test_without_any_key_a_strong_random_one_is_generated(identity):
    await identity.create_user("xena", PASSWORD, ["market"])
    first = await identity.rotate_api_key("xena")
    second = await identity.rotate_api_key("xena")
    assert first.generated
    assert second.generated
    assert len(first.api_key) == 64
    assert int(first.api_key, 16) >= 0
    assert first.api_key != second.api_key


async def test_old_key_stops_working_at_once(identity):
    await identity.create_user("yara", PASSWORD, ["market"])
    old = (await identity.rotate_api_key("yara")).api_key
    new = (await identity.rotate_api_key("yara")).api_key
    with pytest.raises(InvalidCredentialsError):
        await identity.verify_api_key(old)
    assert (await identity.verify_api_key(new)).username == "yara"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("x" * 31, "at least 32"),
        ("x" * 1025, "at most 1024"),
        ("x" * 20 + " " + "y" * 20, "printable"),
    ],
)
async def test_unusable_supplied_keys_are_refused(identity, key, problem):
    await identity.create_user("zoe", PASSWORD, ["market"])
    with pytest.raises(InvalidInputError, match=problem):
        await identity.rotate_api_key("zoe", key)
    assert (await identity.get_user("zoe")).api_key_id is None


async def test_a_key_held_by_another_user_is_refused(identity):
    key = "shared-key-" + "0" * 40
    await identity.create_user("anna", PASSWORD, ["market"])
    await identity.create_user("bert", PASSWORD, ["market"])
    await identity.rotate_api_key("anna", key)
    with pytest.raises(ApiKeyInUseError):
        await identity.rotate_api_key("bert", key)
    with pytest.raises(ApiKeyInUseError):
        await identity.rotate_api_key("anna", key)
    assert (await identity.verify_api_key(key)).username == "anna"
    assert (await identity.get_user("bert")).api_key_id is None


async def test_new_key_comes_from_the_secrets_layer_primary_name_before_alias(
    database, settings, clock
):
    primary, alias = "p" * 40, "a" * 40
    manager = env_secrets({"PORTFOLIO_NEW_API_KEY": primary, "PORTFOLIO_ROTATION_API_KEY": alias})
    identity = IdentityService(database, settings, secrets_manager=manager, clock=clock)
    await identity.create_user("carl", PASSWORD, ["market"])
    result = await identity.rotate_api_key("carl")
    assert result.api_key == primary
    assert not result.generated
    explicit = await identity.rotate_api_key("carl", "e" * 40)
    assert explicit.api_key == "e" * 40


async def test_legacy_alias_is_used_when_the_primary_is_absent(database, settings, clock):
    manager = env_secrets({"PORTFOLIO_ROTATION_API_KEY": "a" * 40})
    identity = IdentityService(database, settings, secrets_manager=manager, clock=clock)
    await identity.create_user("dina", PASSWORD, ["market"])
    assert (await identity.rotate_api_key("dina")).api_key == "a" * 40


async def test_deactivated_users_key_is_refused_like_an_unknown_key(identity):
    await identity.create_user("emil", PASSWORD, ["market"])
    key = (await identity.rotate_api_key("emil")).api_key
    await identity.deactivate_user("emil")
    with pytest.raises(InvalidCredentialsError, match=r"^invalid API key$"):
        await identity.verify_api_key(key)


@pytest.mark.parametrize("key", ["", "short", "z" * 64, "z" * 5000])
async def test_unknown_or_malformed_keys_are_invalid_credentials(identity, key):
    with pytest.raises(InvalidCredentialsError, match="invalid API key"):
        await identity.verify_api_key(key)


async def test_api_key_verification_ignores_password_expiry(identity, clock):
    await identity.create_user("fred", PASSWORD, ["market"])
    key = (await identity.rotate_api_key("fred")).api_key
    clock.advance(days=365)
    assert (await identity.verify_api_key(key)).username == "fred"


async def test_two_service_instances_over_one_database_see_each_others_writes(database, settings):
    first = IdentityService(database, settings, secrets_manager=env_secrets(), clock=Clock())
    second = IdentityService(database, settings, secrets_manager=env_secrets(), clock=Clock())
    await first.create_user("gina", PASSWORD, ["market"])
    key = (await second.rotate_api_key("gina")).api_key
    assert (await first.verify_api_key(key)).username == "gina"


async def test_logs_never_carry_passwords_keys_or_hashes(identity, database, caplog):
    caplog.set_level(logging.DEBUG)
    await identity.create_user("hank", PASSWORD, ["market"])
    for _ in range(6):
        with contextlib.suppress(InvalidCredentialsError, TooManyAttemptsError):
            await identity.authenticate("hank", "wrong password " + PASSWORD)
    rotation = await identity.rotate_api_key("hank")
    async with database.sessions() as session:
        account = await store.get_user(session, "hank")
    assert account is not None
    logged = caplog.text
    assert "hank" in logged
    for secret in (PASSWORD, rotation.api_key, account.password_hash, account.api_key_hash):
        assert secret is not None
        assert secret not in logged
