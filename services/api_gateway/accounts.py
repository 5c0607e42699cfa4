"""Accounts as the identity service reports them: a user, an API key's verification, and
the access-change feed (its entries and pages)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_micros(moment: datetime) -> int:
    """Return an aware datetime as whole microseconds since the epoch (exact, no float)."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _version(password_changed_at: datetime | None) -> int | None:
    # Without an offset the moment is unknown: None, and the token gets the strict `iat` check.
    if password_changed_at is None or password_changed_at.tzinfo is None:
        return None
    return epoch_micros(password_changed_at)


class IdentityUser(BaseModel):
    """A user as the identity service answers it (never a password or key hash)."""

    model_config = ConfigDict(frozen=True)

    username: str
    roles: tuple[str, ...]
    is_active: bool
    created_at: datetime | None = None
    updated_at: datetime | None = None
    last_login_at: datetime | None = None
    password_changed_at: datetime | None = None
    password_expires_at: datetime | None = None
    api_key_id: str | None = None
    api_key_last_rotated_at: datetime | None = None
    # The last change that ended live access (rotation, deactivation, roles, API key).
    access_changed_at: datetime | None = None
    # That change's position in the identity service's change feed (None: no change yet).
    access_seq: int | None = None
    must_change_password: bool = False
    deleted_at: datetime | None = None
    api_key_first_used_at: datetime | None = None

    @property
    def password_version(self) -> int | None:
        """Return the version of the user's password (`password_changed_at` in microseconds
        since the epoch), or None if the identity service does not say."""
        return _version(self.password_changed_at)


class ApiKeyVerification(BaseModel):
    """The user an API key belongs to, and the key's public id."""

    model_config = ConfigDict(frozen=True)

    user: IdentityUser
    key_id: str


class FeedFormatError(ValueError):
    """The change feed answered something that is not a change page."""


@dataclass(frozen=True, slots=True)
class AccessChange:
    """One entry of the change feed."""

    username: str
    is_active: bool
    roles: frozenset[str]
    changed_at: float  # epoch seconds, the identity service's clock: shown, never compared
    # The user's password version (`password_changed_at` in microseconds since the epoch).
    password_version: int | None = None
    # The change's position in the feed: unique and in commit order (None: not said).
    seq: int | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> AccessChange:
        """Read one feed entry, or raise `FeedFormatError`."""
        try:
            username = entry["username"]
            is_active = entry["is_active"]
            roles = entry["roles"]
            changed_at = datetime.fromisoformat(str(entry["changed_at"]))
            seq = entry["seq"]
            password_at = entry.get("password_changed_at")
            password_changed_at = (
                None if password_at is None else datetime.fromisoformat(str(password_at))
            )
        except (KeyError, TypeError, ValueError):
            raise FeedFormatError("a change entry lacks a field or has a bad one") from None
        if (
            not isinstance(username, str)
            or not isinstance(is_active, bool)
            or not isinstance(roles, list)
            or changed_at.tzinfo is None
            or type(seq) is not int
            or seq < 1
        ):
            raise FeedFormatError("a change entry has a field of the wrong type")
        return cls(
            username=username,
            is_active=is_active,
            roles=frozenset(str(role) for role in roles),
            changed_at=changed_at.timestamp(),
            password_version=_version(password_changed_at),
            seq=seq,
        )

    @classmethod
    def from_user(cls, user: IdentityUser) -> AccessChange:
        """Read the user the identity service answered a change with, or raise
        `FeedFormatError`: the change as the feed will report it."""
        changed_at = user.access_changed_at or user.updated_at
        if changed_at is None or changed_at.tzinfo is None:
            raise FeedFormatError("the changed user lacks the time of the change")
        return cls(
            username=user.username,
            is_active=user.is_active,
            roles=frozenset(user.roles),
            changed_at=changed_at.timestamp(),
            password_version=user.password_version,
            seq=user.access_seq,
        )


@dataclass(frozen=True, slots=True)
class AccessChangePage:
    """One page of the change feed: poll again after `cursor` (at once when `more`)."""

    changes: list[AccessChange]
    # The identity service's position, passed back as it is: never a time of this gateway.
    cursor: int
    more: bool = False

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AccessChangePage:
        """Read a change page, or raise `FeedFormatError`."""
        entries = body.get("changes")
        cursor = body.get("cursor")
        if not isinstance(entries, list) or type(cursor) is not int or cursor < 0:
            raise FeedFormatError("the change feed answered without changes and a cursor")
        if not all(isinstance(entry, Mapping) for entry in entries):
            raise FeedFormatError("a change entry is not an object")
        return cls(
            changes=[AccessChange.from_json(entry) for entry in entries],
            cursor=cursor,
            more=body.get("more") is True,
        )


class StoredRevocation(BaseModel):
    """A logout revocation the identity store keeps for a gateway on in-process state."""

    jti: str
    expires_at: datetime


class StoredUsage(BaseModel):
    """API-key usage totals the identity store keeps for a gateway on in-process state."""

    key_id: str
    username: str
    requests: int
    services: dict[str, int]
    status_classes: dict[str, int]
    first_used_at: datetime
    last_used_at: datetime
    last_client: str | None = None
