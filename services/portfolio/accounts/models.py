"""The table of user accounts."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from services.portfolio.db import Base, UTCDateTime


class UserAccount(Base):
    """A user of the system, with hashed credentials only."""

    __tablename__ = "user_accounts"
    __table_args__ = (
        Index("ix_user_accounts_username", "username", unique=True),
        # API keys are looked up by hash: one unique index, never a scan.
        Index("ix_user_accounts_api_key_hash", "api_key_hash", unique=True),
        # The change feed reads by this column: a range scan, never the whole table.
        Index("ix_user_accounts_access_changed_at", "access_changed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    roles: Mapped[list[str]] = mapped_column(JSON)
    is_active: Mapped[bool]
    must_change_password: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    api_key_hash: Mapped[str | None] = mapped_column(String(64))
    api_key_id: Mapped[str | None] = mapped_column(String(16))
    api_key_last_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Bumped with every change that must end live access (deactivation, roles, rotations);
    # never by a login. The gateway polls it through the change feed.
    access_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # The `AccessChangeRecord.id` of that change: a login answers with it, the gateway writes
    # it into the token, and a token older than a deactivation is refused by this number,
    # never by comparing two clocks.
    access_seq: Mapped[int | None] = mapped_column(Integer, default=None)
    # Set once, when the account is deleted: it never signs in again, and the row stays so
    # that its name stays reserved and its history auditable.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # When the current API key was first presented (None: never yet). Audited once per key.
    api_key_first_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)

    def __repr__(self) -> str:
        return f"UserAccount(username={self.username!r})"


class AccessChangeRecord(Base):
    """One change that ended a user's live access, as the change feed serves it.

    Written in the change's own transaction, after the user's row is locked and changed, with
    the row as it then was. `id` is taken in commit order (see `store.record_access_change`),
    so a reader that has seen id N has seen every committed change up to N.
    """

    __tablename__ = "access_changes"
    __table_args__ = (
        # A new reader asks where the last N seconds of changes start: a range scan.
        Index("ix_access_changes_changed_at", "changed_at"),
        # SQLite: ids never reused, even after the newest row is deleted.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    is_active: Mapped[bool]
    roles: Mapped[list[str]] = mapped_column(JSON)
    api_key_id: Mapped[str | None] = mapped_column(String(16))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def __repr__(self) -> str:
        return f"AccessChangeRecord(id={self.id!r}, username={self.username!r})"


class AuditEvent(Base):
    """One security event, written in the transaction of the change it records.

    Never a password, key or token: who did what to whom, from where, and how it ended.
    """

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_subject", "subject", "id"),
        Index("ix_audit_events_event_type", "event_type", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(32))
    # Who acted (None: the system, or an operator at the CLI) and whom it concerned.
    actor: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(128))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)

    def __repr__(self) -> str:
        return f"AuditEvent(id={self.id!r}, event_type={self.event_type!r})"


class RevokedToken(Base):
    """A gateway access token revoked by its logout, kept until it would have expired."""

    __tablename__ = "revoked_tokens"
    __table_args__ = (Index("ix_revoked_tokens_expires_at", "expires_at"),)

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKeyUsageRecord(Base):
    """API-key usage counted by gateways on in-process state, summed across their flushes."""

    __tablename__ = "api_key_usage"

    key_id: Mapped[str] = mapped_column(String(16), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    requests: Mapped[int] = mapped_column(BigInteger)
    services: Mapped[dict[str, int]] = mapped_column(JSON)
    status_classes: Mapped[dict[str, int]] = mapped_column(JSON)
    first_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_client: Mapped[str | None] = mapped_column(String(64))


class SecondFactor(Base):
    """A user's second factor: a TOTP secret (encrypted) or a passkey (public key only).

    `confirmed_at` is None while an enrolment waits for its first code: such a row never
    signs anyone in and is replaced by the user's next enrolment.
    """

    __tablename__ = "mfa_factors"
    __table_args__ = (
        Index("ix_mfa_factors_username", "username"),
        Index("ix_mfa_factors_credential_id", "credential_id", unique=True),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # totp | passkey
    label: Mapped[str] = mapped_column(String(64))
    # TOTP: the secret sealed with AES-GCM under PORTFOLIO_MFA_ENCRYPTION_KEY.
    secret_sealed: Mapped[str | None] = mapped_column(String(255), default=None)
    # TOTP: the last time step accepted; a code of this step or an earlier one is a replay.
    last_step: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Passkey: the credential id (base64url), its public key (COSE, base64url), sign count.
    credential_id: Mapped[str | None] = mapped_column(String(512), default=None)
    public_key: Mapped[str | None] = mapped_column(String(2048), default=None)
    sign_count: Mapped[int | None] = mapped_column(BigInteger, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class RecoveryCode(Base):
    """A one-time recovery code, stored as its SHA-256 (the code has 60 random bits)."""

    __tablename__ = "mfa_recovery_codes"
    __table_args__ = (Index("ix_mfa_recovery_codes_username", "username"),)

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class MfaChallenge(Base):
    """A short-lived, single-use second-step challenge, stored by the SHA-256 of its id.

    In the identity store, not in a gateway, so that every gateway replica sees it.
    `purpose`: `login` (a second factor is due), `enrol` (the account must enrol first and
    may do nothing else), or a passkey ceremony's own (`passkey_register`).
    """

    __tablename__ = "mfa_challenges"
    __table_args__ = (Index("ix_mfa_challenges_expires_at", "expires_at"),)

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A WebAuthn ceremony's challenge bytes (base64url), when there is one.
    webauthn_challenge: Mapped[str | None] = mapped_column(String(128), default=None)
