"""positions and trades: average-cost positions per user and symbol, the trade ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-10
"""

from collections.abc import Sequence
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _money() -> sa.types.TypeEngine[Decimal]:
    # Exact decimals: NUMERIC(38, 18); SQLite keeps them as fixed-point text (models.Money).
    return sa.Numeric(precision=38, scale=18).with_variant(sa.String(length=40), "sqlite")


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "positions",
        sa.Column("id", _id(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("cost_basis", _money(), nullable=False),
        sa.Column("realized_pnl", _money(), nullable=False),
        sa.Column("last_price", _money(), nullable=True),
        sa.Column("trade_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("trade_count >= 0", name=op.f("ck_positions_trade_count_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
    )
    op.create_index(
        "ix_positions_username_symbol", "positions", ["username", "symbol"], unique=True
    )
    op.create_table(
        "trades",
        sa.Column("id", _id(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("symbol", sa.String(length=41), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("quantity", _money(), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("realized_pnl", _money(), nullable=True),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=True),
        sa.CheckConstraint("side IN ('buy', 'sell')", name=op.f("ck_trades_side_is_buy_or_sell")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
    )
    op.create_index(
        "ix_trades_username_idempotency_key",
        "trades",
        ["username", "idempotency_key"],
        unique=True,
    )
    op.create_index("ix_trades_username_id", "trades", ["username", "id"])
    op.create_index("ix_trades_username_symbol_id", "trades", ["username", "symbol", "id"])


def downgrade() -> None:
    op.drop_index("ix_trades_username_symbol_id", table_name="trades")
    op.drop_index("ix_trades_username_id", table_name="trades")
    op.drop_index("ix_trades_username_idempotency_key", table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_positions_username_symbol", table_name="positions")
    op.drop_table("positions")
