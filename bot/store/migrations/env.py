"""Alembic environment: migrations run on the connection :mod:`bot.store.migrate` hands over.

This folder is package data, not a package (Alembic loads it by path): ``env.py`` and
``versions/``, whose revisions are written as explicit operations so that each stays what it
was when it shipped (never ``metadata.create_all``). A schema change is a new revision file
after the newest one; ``tests/bot_unit/test_migrations.py`` checks that the revisions and
:mod:`bot.store.tables` describe the same schema.

The bridge never lets Alembic open its own connection: :func:`bot.store.migrate.upgrade`
puts an open connection (already in a transaction, holding the migration lock) into
``config.attributes["connection"]``, so that the lock and the migration share one transaction.
Offline (``--sql``) mode is not supported.
"""

from __future__ import annotations

from alembic import context

from bot.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached through a hand-written alembic.ini
    raise RuntimeError(
        "run migrations with `factory-bridge db upgrade` (bot.store.migrate), not bare alembic"
    )
context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things: later revisions use op.batch_alter_table
    render_as_batch=True,
)
with context.begin_transaction():
    context.run_migrations()
