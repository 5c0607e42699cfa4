"""access_changes: the change feed in commit order; user_accounts.access_seq.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("api_key_id", sa.String(length=16), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_changes")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_access_changes_changed_at", "access_changes", ["changed_at"])
    op.add_column("user_accounts", sa.Column("access_seq", sa.Integer(), nullable=True))
    # Every stamped user's last change becomes a feed entry, oldest first, so a gateway that
    # replays its token lifetime after the upgrade still sees the changes made before it.
    op.execute(
        "INSERT INTO access_changes "
        "(username, changed_at, is_active, roles, api_key_id, password_changed_at) "
        "SELECT username, access_changed_at, is_active, roles, api_key_id, password_changed_at "
        "FROM user_accounts WHERE access_changed_at IS NOT NULL "
        "ORDER BY access_changed_at, username"
    )
    op.execute(
        "UPDATE user_accounts SET access_seq = (SELECT max(c.id) FROM access_changes c "
        "WHERE c.username = user_accounts.username)"
    )


def downgrade() -> None:
    with op.batch_alter_table("user_accounts") as batch:
        batch.drop_column("access_seq")
    op.drop_index("ix_access_changes_changed_at", table_name="access_changes")
    op.drop_table("access_changes")
