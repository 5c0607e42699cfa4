"""Queries of the user accounts: one small function each."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.accounts.models import AccessChangeRecord, UserAccount

# The PostgreSQL advisory lock every writer of `access_changes` holds from taking its id to
# its commit (an arbitrary constant, unique to this table's writers).
_FEED_LOCK = 0x4C43_5400_0000_0001
# The lock every change that may take away an active admin holds while it counts them.
_ADMINS_LOCK = 0x4C43_5400_0000_0002


async def get_user(session: AsyncSession, username: str) -> UserAccount | None:
    """Return the account named `username`."""
    result = await session.scalars(select(UserAccount).where(UserAccount.username == username))
    return result.one_or_none()


async def get_user_by_api_key_hash(session: AsyncSession, key_hash: str) -> UserAccount | None:
    """Return the account holding the API key with this hash (one indexed lookup)."""
    result = await session.scalars(select(UserAccount).where(UserAccount.api_key_hash == key_hash))
    return result.one_or_none()


async def list_users(session: AsyncSession) -> Sequence[UserAccount]:
    """Return every account, by username."""
    result = await session.scalars(select(UserAccount).order_by(UserAccount.username))
    return result.all()


async def record_access_change(
    session: AsyncSession, account: UserAccount, *, changed_at: datetime
) -> UserAccount:
    """Append the change just made to `account` (row locked by this transaction) to the
    change feed, and return the account with `access_seq` set to the new entry's id.

    A sequence hands out ids when they are taken, not when they commit: with two writers a
    reader could see id 8 committed while 7 is still in flight, pass it, and never read 7.
    So on PostgreSQL the id is taken under a transaction-scoped advisory lock, which is
    released only once the commit is visible: ids commit in the order they are taken, and
    a reader who sees N has seen (or will never see) every id below it. SQLite serialises
    writers for the whole transaction already. The lock is taken last, after the row
    lock, and held only to the commit that follows at once.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FEED_LOCK})
    seq = await session.scalar(
        insert(AccessChangeRecord)
        .values(
            username=account.username,
            changed_at=changed_at,
            is_active=account.is_active,
            roles=list(account.roles),
            api_key_id=account.api_key_id,
            password_changed_at=account.password_changed_at,
        )
        .returning(AccessChangeRecord.id)
    )
    updated = await update_user(session, account.username, access_seq=seq)
    if updated is None:  # the row is locked by this transaction: it cannot have gone
        raise RuntimeError("the changed account vanished inside its own transaction")
    return updated


async def list_access_changes(
    session: AsyncSession, *, after: int, limit: int
) -> Sequence[AccessChangeRecord]:
    """Return up to `limit` feed entries with an id above `after`, in id order."""
    result = await session.scalars(
        select(AccessChangeRecord)
        .where(AccessChangeRecord.id > after)
        .order_by(AccessChangeRecord.id)
        .limit(limit)
    )
    return result.all()


async def access_feed_head(session: AsyncSession) -> int:
    """Return the highest committed feed id (0 when the feed is empty)."""
    head = await session.scalar(select(func.max(AccessChangeRecord.id)))
    return 0 if head is None else int(head)


async def access_feed_start(session: AsyncSession, *, changed_since: datetime) -> int:
    """Return the cursor just before the first entry stamped at or after `changed_since`."""
    first = await session.scalar(
        select(func.min(AccessChangeRecord.id)).where(
            AccessChangeRecord.changed_at >= changed_since
        )
    )
    if first is None:
        return await access_feed_head(session)
    return int(first) - 1


async def add_user(session: AsyncSession, account: UserAccount) -> UserAccount:
    """Insert an account; a duplicate username raises `IntegrityError` at flush."""
    session.add(account)
    await session.flush()
    return account


async def update_user(
    session: AsyncSession,
    username: str,
    *,
    expect: Mapping[str, Any] | None = None,
    **values: Any,
) -> UserAccount | None:
    """Set columns of one account and return it as stored, or None if there is none (or,
    with `expect`, if any of those columns no longer holds the value given)."""
    conditions = [getattr(UserAccount, column) == value for column, value in (expect or {}).items()]
    result = await session.scalars(
        update(UserAccount)
        .where(UserAccount.username == username, *conditions)
        .values(**values)
        .returning(UserAccount)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return result.one_or_none()


async def refund_login_attempt(session: AsyncSession, username: str) -> None:
    """Give back one attempt counted by `reserve_login_attempt` (never below zero)."""
    await session.execute(
        update(UserAccount)
        .where(UserAccount.username == username, UserAccount.failed_login_count > 0)
        .values(failed_login_count=UserAccount.failed_login_count - 1)
        .execution_options(synchronize_session=False)
    )


async def reserve_login_attempt(
    session: AsyncSession, username: str, now: datetime
) -> UserAccount | None:
    """Count one login attempt against an account that is not refused at `now`, in one
    conditional UPDATE, and return the account as counted; None if it is refused or absent.

    The row stays locked until the transaction ends (PostgreSQL's row lock, SQLite's write
    lock), so a concurrent attempt waits and then sees this one's count.
    """
    result = await session.scalars(
        update(UserAccount)
        .where(
            UserAccount.username == username,
            or_(UserAccount.throttled_until.is_(None), UserAccount.throttled_until <= now),
        )
        .values(failed_login_count=UserAccount.failed_login_count + 1)
        .returning(UserAccount)
        .execution_options(populate_existing=True, synchronize_session=False)
    )
    return result.one_or_none()


async def lock_admins(session: AsyncSession, username: str) -> None:
    """Serialise the changes that may take away an active admin, until this transaction ends.

    PostgreSQL: a transaction-scoped advisory lock, so two of them never both count the
    other's admin as still there. SQLite: a write first, which takes the database's write
    lock before anything is read (a read first would pin a snapshot another writer can
    outdate before this one writes).
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADMINS_LOCK})
    else:
        await session.execute(
            update(UserAccount)
            .where(UserAccount.username == username)
            .values(username=UserAccount.username)
            .execution_options(synchronize_session=False)
        )


async def count_active_admins(session: AsyncSession) -> int:
    """Return how many active, undeleted accounts hold the admin role."""
    result = await session.scalars(
        select(UserAccount.roles).where(
            UserAccount.is_active.is_(True), UserAccount.deleted_at.is_(None)
        )
    )
    return sum(1 for roles in result.all() if "admin" in roles)
