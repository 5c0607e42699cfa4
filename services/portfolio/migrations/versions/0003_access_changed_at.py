"""user_accounts.access_changed_at: when a change last ended the user's live access.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-12
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL until the first deactivation, role change or rotation: a new account has no
    # live access to end, and the change feed reads only stamped rows.
    op.add_column(
        "user_accounts",
        sa.Column("access_changed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_user_accounts_access_changed_at", "user_accounts", ["access_changed_at"])


def downgrade() -> None:
    op.drop_index("ix_user_accounts_access_changed_at", table_name="user_accounts")
    with op.batch_alter_table("user_accounts") as batch:
        batch.drop_column("access_changed_at")
