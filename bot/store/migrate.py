"""Schema migrations: Alembic revisions in :mod:`bot.store.migrations`, applied under a lock.

:func:`upgrade` brings a database to the newest revision in the caller's transaction:

1. It takes the migration lock: on PostgreSQL the transaction-scoped advisory lock
   :data:`LOCK_KEY` (``pg_advisory_xact_lock``), so that two bridges starting at once migrate
   once — the second waits, then finds the database at head. An SQLite file is written by one
   process's writer transaction (``BEGIN IMMEDIATE``), which is lock enough.
2. A database without Alembic's ``alembic_version`` table but with the bridge's tables was
   made by a build from before migrations (``metadata.create_all``). It is **adopted**: the
   tables and columns that build lacked (older builds had no ``escalation_steps.status``, no
   ``batches.task_ids`` and fewer tables) are added with the baseline revision's own
   operations, then it is stamped at the baseline ``0001``. Nothing is dropped or rewritten.
3. Alembic applies every revision after the current one.

All of it is one transaction: on PostgreSQL a failed migration leaves the schema as it was
(transactional DDL); the lock is released at commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

__all__ = [
    "BASELINE",
    "LOCK_KEY",
    "SCRIPT_LOCATION",
    "Migration",
    "MigrationError",
    "compare_to_head",
    "current_revision",
    "head_revision",
    "upgrade",
]

log = logging.getLogger(__name__)

#: The folder of ``env.py`` and ``versions/`` (package data of the wheel).
SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"

#: The revision that describes the schema of every build before migrations existed.
BASELINE = "0001"

#: PostgreSQL advisory lock key held while migrating (a fixed 64-bit number: "fbmigrat").
LOCK_KEY = int.from_bytes(b"fbmigrat", "big") & 0x7FFF_FFFF_FFFF_FFFF


class MigrationError(RuntimeError):
    """The database cannot be brought to this build's schema (the message says why)."""


@dataclass(frozen=True)
class Migration:
    """What :func:`upgrade` did.

    ``before`` is the revision found (``None``: none, a new or un-versioned database),
    ``after`` the revision now (this build's head), ``adopted`` true when an un-versioned
    database of an older build was brought to the baseline and stamped, and ``added`` names
    the tables and ``table.column`` it lacked.
    """

    before: str | None
    after: str | None
    adopted: bool = False
    added: tuple[str, ...] = ()


def _config(conn: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if conn is not None:
        config.attributes["connection"] = conn
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head_revision() -> str:
    """The newest revision this build ships (e.g. ``"0001"``)."""
    head = _scripts().get_current_head()
    assert head is not None, "no migration revisions shipped"
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or ``None`` (new or un-versioned database)."""
    return MigrationContext.configure(conn).get_current_revision()


def compare_to_head(revision: str | None) -> str:
    """Where a database at ``revision`` stands against this build's newest revision.

    Parameters
    ----------
    revision:
        What :func:`current_revision` read (``None``: a new or un-versioned database).

    Returns
    -------
    str
        ``"head"``: the newest this build ships; ``"behind"``: ``None`` or an older revision
        this build ships (``db upgrade`` brings it to head); ``"ahead"``: a revision this build
        does not know, so a newer build migrated the database (upgrade this bridge instead).
    """
    head = head_revision()
    if revision == head:
        return "head"
    if revision is None or revision in {script.revision for script in _scripts().walk_revisions()}:
        return "behind"
    return "ahead"


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})


def _adopt(conn: Connection, existing: set[str]) -> tuple[str, ...]:
    """Bring an un-versioned database of an older build up to :data:`BASELINE`."""
    baseline: Any = _scripts().get_revision(BASELINE)
    assert baseline is not None
    module = baseline.module
    added: list[str] = []
    inspector = inspect(conn)
    with Operations.context(MigrationContext.configure(conn)):
        for (table, column), add in module.ADD_COLUMN.items():
            if table in existing and column not in {
                c["name"] for c in inspector.get_columns(table)
            }:
                add()
                added.append(f"{table}.{column}")
        for table, create in module.CREATE_TABLE.items():
            if table not in existing:
                create()
                added.append(table)
    command.stamp(_config(conn), BASELINE)
    return tuple(added)


def upgrade(conn: Connection) -> Migration:
    """Bring the database behind ``conn`` to the newest revision (see the module docstring).

    ``conn`` must be in a transaction, which the caller commits (the bridge runs this as a
    unit of work on its writer: :meth:`bot.store.Store.create_schema`).

    Raises
    ------
    MigrationError
        When the database is at a revision this build does not know (made by a newer build).
    """
    _lock(conn)
    before = current_revision(conn)
    adopted = False
    added: tuple[str, ...] = ()
    if before is None:
        existing = set(inspect(conn).get_table_names())
        if existing & {"tasks", "events", "audit"}:
            added = _adopt(conn, existing)
            adopted = True
            log.warning(
                "adopted a database made before migrations: stamped at %s%s",
                BASELINE,
                f", added {', '.join(added)}" if added else "",
            )
    try:
        command.upgrade(_config(conn), "head")
    except CommandError as exc:
        raise MigrationError(
            f"the database is at revision {before!r}, which this build does not know "
            f"(its newest is {head_revision()!r}): was it upgraded by a newer build? ({exc})"
        ) from exc
    after = current_revision(conn)
    if after != before:
        log.info("database schema migrated from %s to %s", before or "nothing", after)
    return Migration(before=before, after=after, adopted=adopted, added=added)
