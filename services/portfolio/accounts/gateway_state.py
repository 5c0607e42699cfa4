"""What a gateway on in-process state keeps here across its restarts: logout revocations
(each audited as `token.revoked` in its own transaction) and API-key usage totals."""

from datetime import datetime

from sqlalchemy import delete, select

from services.portfolio.accounts import audit as audit_log
from services.portfolio.accounts.audit import AuditContext, EventType
from services.portfolio.accounts.models import ApiKeyUsageRecord, RevokedToken
from services.portfolio.accounts.schemas import KeyUsage, Revocation
from services.portfolio.db import Database
from shared.apikeys import merge_usage
from shared.usernames import username_label


async def revoke_token(
    database: Database,
    audit: AuditContext,
    *,
    jti: str,
    username: str,
    expires_at: datetime,
    now: datetime,
) -> None:
    """Keep a logout's revocation until the token would have expired, and audit it."""
    name = username_label(username)
    async with database.sessions.begin() as session:
        # Expired revocations are dropped here, so the table stays as small as the live ones.
        await session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= now))
        if await session.get(RevokedToken, jti) is None:
            session.add(RevokedToken(jti=jti, username=name, expires_at=expires_at, revoked_at=now))
        await audit_log.record(
            session, audit, EventType.TOKEN_REVOKED, subject=name, at=now, detail={"jti": jti}
        )


async def live_revocations(database: Database, *, now: datetime) -> list[Revocation]:
    """Return the revocations of tokens that have not expired yet."""
    async with database.sessions() as session:
        rows = await session.scalars(select(RevokedToken).where(RevokedToken.expires_at > now))
        return [Revocation(jti=row.jti, expires_at=row.expires_at) for row in rows.all()]


async def add_usage(database: Database, counts: list[KeyUsage]) -> None:
    """Add a gateway's counts since its last flush to the stored totals."""
    async with database.sessions.begin() as session:
        for count in counts:
            row = await session.get(ApiKeyUsageRecord, count.key_id, with_for_update=True)
            if row is None:
                row = ApiKeyUsageRecord(
                    key_id=count.key_id,
                    username=count.username,
                    requests=0,
                    services={},
                    status_classes={},
                    first_used_at=count.first_used_at,
                    last_used_at=count.last_used_at,
                )
                session.add(row)
            merge_usage(row, count)


async def usage_totals(database: Database) -> list[KeyUsage]:
    """Return the stored usage totals, most recently used first."""
    async with database.sessions() as session:
        rows = await session.scalars(
            select(ApiKeyUsageRecord).order_by(ApiKeyUsageRecord.last_used_at.desc())
        )
        return [
            KeyUsage(
                key_id=row.key_id,
                username=row.username,
                requests=row.requests,
                services=dict(row.services),
                status_classes=dict(row.status_classes),
                first_used_at=row.first_used_at,
                last_used_at=row.last_used_at,
                last_client=row.last_client,
            )
            for row in rows.all()
        ]
