"""Persistence: schema, migrations, and the SQLite / PostgreSQL engines."""
