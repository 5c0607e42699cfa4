"""An account's life over the identity service: creation with a one-time password,
reactivation, soft deletion, password resets, API keys, and the last-admin guard."""

import asyncio
import json
import uuid
from collections.abc import Iterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from services.portfolio.accounts.models import AccessChangeRecord, AuditEvent
from services.portfolio.accounts.passwords import PasswordHasher
from services.portfolio.accounts.service import IdentityService
from services.portfolio.config import PortfolioSettings
from services.portfolio.errors import (
    AccountDeletedError,
    AccountInactiveError,
    InvalidCredentialsError,
    InvalidInputError,
    LastAdminError,
    PasswordExpiredError,
    UserExistsError,
    UserNotFoundError,
)
from shared.secrets import SecretRegistry, SecretsManager, SecretsSettings, api_key_secret_name
from tests.portfolio.conftest import PASSWORD, make_settings

# aws_env: fake AWS credentials and none of this machine's configuration, for one test.
from tests.shared.secrets.stores.test_aws import aws_env, current_version, make, seed  # noqa: F401
from tests.support.moto_server import MotoServer
from tests.support.openbao import ROOT_TOKEN, OpenBao

NEW_PASSWORD = "velvet quasar mandolin"


async def events(identity: IdentityService, subject: str) -> list[str]:
    async with identity.database.sessions() as session:
        rows = await session.scalars(
            select(AuditEvent.event_type)
            .where(AuditEvent.subject == subject)
            .order_by(AuditEvent.id)
        )
        return list(rows.all())


async def feed_length(identity: IdentityService, username: str) -> int:
    async with identity.database.sessions() as session:
        rows = await session.scalars(
            select(AccessChangeRecord.id).where(AccessChangeRecord.username == username)
        )
        return len(rows.all())


# create_account


async def test_without_a_password_a_one_time_password_is_returned_once(identity):
    issued = await identity.create_account("alice", ["trading"])
    assert issued.one_time_password is not None
    assert len(issued.one_time_password) == 24
    assert issued.user.must_change_password is True
    assert issued.one_time_password not in repr(issued)
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("alice", issued.one_time_password)
    await identity.rotate_password("alice", issued.one_time_password, NEW_PASSWORD)
    assert (await identity.authenticate("alice", NEW_PASSWORD)).username == "alice"


async def test_an_admin_chosen_password_must_be_changed_at_first_sign_in(identity):
    issued = await identity.create_account("bob", ["market"], PASSWORD)
    assert issued.one_time_password is None
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("bob", PASSWORD)


@pytest.mark.parametrize(("roles", "named"), [([], "at least one role"), (["wizard"], "wizard")])
async def test_roles_must_be_known_and_at_least_one(identity, roles, named):
    with pytest.raises(InvalidInputError, match=named):
        await identity.create_account("carol", roles)


@pytest.mark.parametrize("taken", ["DAVE", "Dave", "\uff24\uff41\uff56\uff45"])  # full-width
async def test_a_name_is_taken_whatever_its_case_or_width(identity, taken):
    await identity.create_account("dave", ["portfolio"])
    with pytest.raises(UserExistsError):
        await identity.create_account(taken, ["portfolio"])


# reactivate, delete


async def test_a_deactivated_user_comes_back_with_reactivate(identity):
    await identity.create_user("erin", PASSWORD, ["portfolio"])
    await identity.deactivate_user("erin")
    with pytest.raises(AccountInactiveError):
        await identity.authenticate("erin", PASSWORD)
    user = await identity.reactivate_user("erin")
    assert user.is_active is True
    assert (await identity.authenticate("erin", PASSWORD)).username == "erin"
    assert "user.reactivated" in await events(identity, "erin")


async def test_a_deleted_account_never_signs_in_again_and_keeps_its_name_and_history(identity):
    await identity.create_user("frank", PASSWORD, ["portfolio"])
    rotation = await identity.rotate_api_key("frank", "frank-key-" + "f" * 40)
    before = await feed_length(identity, "frank")
    deleted = await identity.delete_user("frank")
    assert deleted.deleted_at is not None
    assert deleted.is_active is False
    assert await feed_length(identity, "frank") == before + 1
    with pytest.raises(AccountInactiveError):
        await identity.authenticate("frank", PASSWORD)
    with pytest.raises(InvalidCredentialsError):
        await identity.verify_api_key(rotation.api_key)
    with pytest.raises(UserExistsError):
        await identity.create_account("Frank", ["portfolio"])
    for change in (identity.reactivate_user, identity.delete_user, identity.reset_password):
        with pytest.raises(AccountDeletedError, match="deleted"):
            await change("frank")
    with pytest.raises(AccountDeletedError):
        await identity.rotate_api_key("frank", generate=True)
    with pytest.raises(AccountDeletedError):
        await identity.set_roles("frank", ["trading"])
    assert await events(identity, "frank") == [
        "user.created",
        "api_key.rotated",
        "user.deleted",
        "login.failed",
    ]
    assert (await identity.get_user("frank")).deleted_at == deleted.deleted_at


async def test_changes_to_an_unknown_user_are_not_found(identity):
    for change in (identity.reactivate_user, identity.delete_user, identity.reset_password):
        with pytest.raises(UserNotFoundError):
            await change("nobody")


# reset_password


async def test_a_reset_sets_a_one_time_password_and_ends_the_old_one(identity, clock):
    created = await identity.create_user("grace", PASSWORD, ["portfolio"])
    clock.advance(seconds=1)
    issued = await identity.reset_password("grace")
    assert issued.one_time_password is not None
    assert issued.user.must_change_password is True
    assert issued.user.password_changed_at > created.password_changed_at
    assert issued.user.access_seq is not None
    with pytest.raises(InvalidCredentialsError):
        await identity.authenticate("grace", PASSWORD)
    with pytest.raises(PasswordExpiredError):
        await identity.authenticate("grace", issued.one_time_password)
    await identity.rotate_password("grace", issued.one_time_password, NEW_PASSWORD)
    assert (await identity.authenticate("grace", NEW_PASSWORD)).username == "grace"
    assert "password.reset" in await events(identity, "grace")


class GatedHasher(PasswordHasher):
    """Hashes `held` only once the test opens the gate, so a change can commit meanwhile."""

    def __init__(self, settings: PortfolioSettings, held: str) -> None:
        super().__init__(settings)
        self.held = held
        self.hashing = asyncio.Event()
        self.gate = asyncio.Event()

    async def hash(self, password: str) -> str:
        if password == self.held:
            self.hashing.set()
            await self.gate.wait()
        return await super().hash(password)


@pytest.mark.parametrize("change", ["reset_password", "deactivate_user", "delete_user"])
async def test_a_rotation_racing_an_admins_change_does_not_undo_it(
    database, settings, clock, change
):
    # The user (or whoever holds their password) rotates it; an admin's reset, deactivation
    # or deletion commits while the new password is being hashed: the rotation must not
    # write over it (a reset's one-time password would be replaced by the rotator's).
    hasher = GatedHasher(settings, NEW_PASSWORD)
    identity = IdentityService(database, settings, clock=clock, hasher=hasher)
    await identity.create_user("root", PASSWORD, ["admin"])
    await identity.create_user("kim", PASSWORD, ["portfolio"])
    rotation = asyncio.create_task(identity.rotate_password("kim", PASSWORD, NEW_PASSWORD))
    await hasher.hashing.wait()
    clock.advance(seconds=1)
    await getattr(identity, change)("kim")
    after_change = await identity.get_user("kim")
    hasher.gate.set()
    with pytest.raises((InvalidCredentialsError, AccountInactiveError)):
        await rotation
    assert await identity.get_user("kim") == after_change
    with pytest.raises((InvalidCredentialsError, AccountInactiveError, PasswordExpiredError)):
        await identity.authenticate("kim", NEW_PASSWORD)
    assert "password.rotated" not in await events(identity, "kim")


# API keys over HTTP: always a new random key, written back like rotate_api_key


async def test_a_generated_key_replaces_the_old_one_at_once(identity):
    await identity.create_user("heidi", PASSWORD, ["market"])
    first = await identity.rotate_api_key("heidi", generate=True)
    second = await identity.rotate_api_key("heidi", generate=True)
    assert first.api_key != second.api_key
    assert second.generated is True
    with pytest.raises(InvalidCredentialsError):
        await identity.verify_api_key(first.api_key)
    assert (await identity.verify_api_key(second.api_key)).username == "heidi"


async def test_a_generated_key_is_written_back_to_vault(database, sqlite_url, tmp_path, clock):
    with OpenBao(tmp_path) as vault:
        vault.put("secret/lct", {"PORTFOLIO_NEW_API_KEY": "operator-set-" + "v" * 40})
        manager = SecretsManager(
            settings=SecretsSettings(
                secrets_provider="vault",
                vault_addr=vault.url,
                vault_token=SecretStr(ROOT_TOKEN),
                vault_secret_path="secret/lct",
                secrets_cache_ttl_seconds=0,
            ),
            registry=SecretRegistry.load(),
            environ={},
        )
        identity = IdentityService(
            database, make_settings(sqlite_url), secrets_manager=manager, clock=clock
        )
        await identity.create_user("ivan", PASSWORD, ["market"])
        rotation = await identity.rotate_api_key("ivan", generate=True)
        stored = vault.read("secret/lct")
        await manager.aclose()
    # Not the operator's next key: the HTTP API always makes a fresh one.
    assert rotation.api_key != "operator-set-" + "v" * 40
    assert rotation.stored_at is not None
    assert stored is not None
    assert stored[api_key_secret_name("ivan")] == rotation.api_key


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


@pytest.mark.usefixtures("aws_env")
async def test_a_generated_key_is_written_back_to_aws(database, sqlite_url, clock, moto):
    name = f"lct/lifecycle-{uuid.uuid4().hex[:8]}"
    client = seed(moto, name, json.dumps({"PORTFOLIO_NEW_API_KEY": "o" * 40}))
    async with make(moto.url, name) as manager:
        identity = IdentityService(
            database, make_settings(sqlite_url), secrets_manager=manager, clock=clock
        )
        await identity.create_user("judith", PASSWORD, ["market"])
        rotation = await identity.rotate_api_key("judith", generate=True)
    stored = json.loads(current_version(client, name)["SecretString"])
    # Not the operator's next key: the HTTP API always makes a fresh one.
    assert rotation.api_key != "o" * 40
    assert rotation.stored_at is not None
    assert rotation.stored_at.startswith(f"aws:{name}")
    assert stored == {
        "PORTFOLIO_NEW_API_KEY": "o" * 40,
        api_key_secret_name("judith"): rotation.api_key,
    }


# The last active admin


async def test_the_last_active_admin_cannot_be_removed_in_any_way(identity):
    await identity.create_user("root", PASSWORD, ["admin"])
    await identity.create_user("judy", PASSWORD, ["portfolio"])
    with pytest.raises(LastAdminError, match="last active admin"):
        await identity.deactivate_user("root")
    with pytest.raises(LastAdminError):
        await identity.delete_user("root")
    with pytest.raises(LastAdminError):
        await identity.set_roles("root", ["portfolio"])
    assert (await identity.get_user("root")).is_active is True
    assert await events(identity, "root") == ["user.created"]
    await identity.set_roles("root", ["admin", "trading"])  # still an admin: allowed
    await identity.deactivate_user("judy")  # not an admin: allowed


async def test_with_two_admins_one_may_go(identity):
    await identity.create_user("root", PASSWORD, ["admin"])
    await identity.create_user("kate", PASSWORD, ["admin"])
    await identity.delete_user("kate")
    with pytest.raises(LastAdminError):
        await identity.deactivate_user("root")


async def test_two_concurrent_deletes_of_the_last_two_admins_leave_one(identity):
    await identity.create_user("root", PASSWORD, ["admin"])
    await identity.create_user("liam", PASSWORD, ["admin"])
    results = await asyncio.gather(
        identity.delete_user("root"), identity.delete_user("liam"), return_exceptions=True
    )
    refused = [r for r in results if isinstance(r, LastAdminError)]
    assert len(refused) == 1, results
    remaining = [u for u in await identity.list_users() if u.is_active and "admin" in u.roles]
    assert len(remaining) == 1


async def test_concurrent_demotions_and_deactivations_leave_an_admin(identity):
    for name in ("root", "mia", "noah"):
        await identity.create_user(name, PASSWORD, ["admin"])
    results = await asyncio.gather(
        identity.deactivate_user("root"),
        identity.set_roles("mia", ["portfolio"]),
        identity.delete_user("noah"),
        return_exceptions=True,
    )
    assert sum(isinstance(r, LastAdminError) for r in results) == 1, results
    remaining = [u for u in await identity.list_users() if u.is_active and "admin" in u.roles]
    assert len(remaining) == 1
