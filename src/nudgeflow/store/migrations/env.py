"""Alembic environment: the engine is handed in by nudgeflow.store.database, never read from a file."""

from alembic import context

from nudgeflow.store.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
