"""Alembic environment: runs on the connection crystaldb hands it, under an advisory lock."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from crystaldb.schema import Base

# Any fixed number: two `crystaldb db upgrade` at once take turns instead of racing.
MIGRATION_LOCK = 0x63727973


def run_migrations_online() -> None:
    """Migrate on the connection passed through config.attributes by crystaldb.schema.migrate."""
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("crystaldb migrations run online only: use `crystaldb db upgrade`")
run_migrations_online()
