"""Alembic environment of the service's schema: always run on a connection the store passes in."""

from __future__ import annotations

from alembic import context

from raydrive.service.db.tables import metadata

connection = context.config.attributes["connection"]
# The store holds its migration lock in an open transaction on this connection; the whole
# upgrade runs inside it (DDL is transactional on SQLite and PostgreSQL), all or nothing.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
