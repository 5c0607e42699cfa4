"""Queries of the user accounts: unique indexes, and the API-key lookup that is one indexed
query whatever the number of users."""

from datetime import UTC, datetime

from sqlalchemy import event, insert, inspect

from services.portfolio.accounts.models import UserAccount
from shared.apikeys import digest


async def test_user_accounts_has_unique_indexes_on_username_and_api_key_hash(database):
    def indexes(sync_conn):
        return {
            ix["name"]: (ix["column_names"], ix["unique"])
            for ix in inspect(sync_conn).get_indexes("user_accounts")
        }

    async with database.engine.connect() as conn:
        found = await conn.run_sync(indexes)
    assert found["ix_user_accounts_username"] == (["username"], True)
    assert found["ix_user_accounts_api_key_hash"] == (["api_key_hash"], True)


async def test_api_key_lookup_is_one_indexed_query_among_10000_users(database, identity):
    now = datetime.now(UTC)
    rows = [
        {
            "username": f"user{i:05d}",
            "password_hash": "$argon2id$placeholder",
            "roles": ["market"],
            "is_active": True,
            "must_change_password": False,
            "created_at": now,
            "updated_at": now,
            "password_changed_at": now,
            "api_key_hash": digest(f"bulk-key-{i:05d}-" + "x" * 32),
            "api_key_id": digest(f"bulk-key-{i:05d}-" + "x" * 32)[:16],
            "failed_login_count": 0,
        }
        for i in range(10_000)
    ]
    async with database.sessions.begin() as session:
        await session.execute(insert(UserAccount), rows)
    async with database.engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")

    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    key = "bulk-key-07777-" + "x" * 32
    # The first use of a key is stamped and audited once; every later check is one query.
    await identity.verify_api_key(key)
    event.listen(database.engine.sync_engine, "before_cursor_execute", record)
    try:
        user = await identity.verify_api_key(key)
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", record)
    assert user.username == "user07777"
    assert len(statements) == 1, statements

    statement, parameters = statements[0]
    async with database.engine.connect() as conn:
        if database.engine.dialect.name == "sqlite":
            plan = " ".join(
                str(row[-1])
                for row in await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "USING INDEX ix_user_accounts_api_key_hash" in plan, plan
        else:
            plan = " ".join(
                str(row[0])
                for row in await conn.exec_driver_sql("EXPLAIN " + statement, parameters)
            )
            assert "Index Scan using ix_user_accounts_api_key_hash" in plan, plan
        assert "SCAN user_accounts" not in plan
        assert "Seq Scan" not in plan
