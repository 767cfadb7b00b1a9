"""Alembic migrations of the bridge's schema (shipped in the wheel; see :mod:`bot.store.migrate`).

``env.py`` is Alembic's environment script and ``versions/`` holds the revisions, each written
as explicit operations so that it stays what it was when it shipped (never
``metadata.create_all``). Add a revision with ``alembic -c <config> revision`` pointed at this
folder, or by copying the newest one; :mod:`tests.bot_unit.test_migrations` checks that the
revisions and :mod:`bot.store.tables` describe the same schema.
"""
