"""Alembic environment: ``consentry init`` runs migrations itself, on the connection it gives."""

from __future__ import annotations

from alembic import context

from consentry.ledger.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when someone runs the alembic CLI by hand
    from consentry.ledger.engine import make_engine

    engine = make_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///consentry.db")
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
