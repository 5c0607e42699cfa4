"""Alembic environment: runs on the connection `services.portfolio.migrations` hands over."""

from alembic import context

from services.portfolio.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "run the portfolio migrations through services.portfolio.migrations.upgrade(engine)"
    )

context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
with context.begin_transaction():
    context.run_migrations()
