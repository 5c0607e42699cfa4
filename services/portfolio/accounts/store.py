"""Queries of the user accounts: one small function each."""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.portfolio.accounts.models import UserAccount


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


async def list_access_changes(
    session: AsyncSession, *, since: datetime, limit: int
) -> Sequence[UserAccount]:
    """Return up to `limit` accounts whose access changed at or after `since`, oldest first."""
    result = await session.scalars(
        select(UserAccount)
        .where(UserAccount.access_changed_at >= since)
        .order_by(UserAccount.access_changed_at, UserAccount.username)
        .limit(limit)
    )
    return result.all()


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
