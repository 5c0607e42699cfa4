"""What a gateway on in-process state keeps in the identity store across its restarts."""

from datetime import UTC, datetime, timedelta

from services.portfolio.accounts import gateway_state
from services.portfolio.accounts.audit import AuditContext, AuditQuery, read_page
from services.portfolio.accounts.schemas import KeyUsage

T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def usage(requests: int, at: datetime, client: str, **services: int) -> KeyUsage:
    return KeyUsage(
        key_id="0123456789abcdef",
        username="alice",
        requests=requests,
        services=services,
        status_classes={"2xx": requests},
        first_used_at=at,
        last_used_at=at,
        last_client=client,
    )


async def test_usage_counts_add_up_across_saves(database):
    await gateway_state.add_usage(database, [usage(2, T0, "192.0.2.1", trading=2)])
    later = T0 + timedelta(minutes=5)
    await gateway_state.add_usage(database, [usage(3, later, "192.0.2.2", trading=1, market=2)])
    await gateway_state.add_usage(database, [usage(1, T0 - timedelta(hours=1), "192.0.2.3")])
    [total] = await gateway_state.usage_totals(database)
    assert total.requests == 6
    assert total.services == {"trading": 3, "market": 2}
    assert total.status_classes == {"2xx": 6}
    assert total.first_used_at == T0 - timedelta(hours=1)
    assert total.last_used_at == later
    assert total.last_client == "192.0.2.2"  # the latest use's, not the latest save's


async def test_revocations_last_as_long_as_their_tokens_and_are_audited(database):
    context = AuditContext(actor="alice", client_address="192.0.2.9", request_id="r-1")
    for jti, minutes in (("short", 1), ("long", 30)):
        await gateway_state.revoke_token(
            database,
            context,
            jti=jti,
            username="alice",
            expires_at=T0 + timedelta(minutes=minutes),
            now=T0,
        )
    live = await gateway_state.live_revocations(database, now=T0 + timedelta(minutes=5))
    assert [r.jti for r in live] == ["long"]
    page = await read_page(database, AuditQuery(user="alice"), cursor=None, limit=10)
    assert [(e.type, e.actor, e.detail) for e in page.events] == [
        ("token.revoked", "alice", {"jti": "long"}),
        ("token.revoked", "alice", {"jti": "short"}),
    ]
