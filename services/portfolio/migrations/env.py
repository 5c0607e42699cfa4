"""Alembic environment: runs on the connection `services.portfolio.migrations` hands over."""

from alembic import context

# One history for both domains: every table must be on the metadata before it is compared.
from services.portfolio.accounts import models as _accounts_models  # noqa: F401
from services.portfolio.db import Base
from services.portfolio.trading import models as _trading_models  # noqa: F401

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run the portfolio migrations through services.portfolio.migrations.upgrade(engine)"
    )

context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
