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
   A table of one of the bridge's names that lacks the columns every build gave it
   (:data:`KEY_COLUMNS`) is another application's: such a database is refused
   (:func:`refuse_foreign_database`), as is one whose ``alembic_version`` holds a revision not
   named like the bridge's (:data:`REVISION_ID`: another application's Alembic wrote it).
3. Alembic applies every revision after the current one.

All of it is one transaction: on PostgreSQL a failed migration leaves the schema as it was
(transactional DDL); the lock is released at commit.
"""

from __future__ import annotations

import logging
import re
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
    "CORE_TABLES",
    "KEY_COLUMNS",
    "LOCK_KEY",
    "REVISION_ID",
    "SCRIPT_LOCATION",
    "Migration",
    "MigrationError",
    "compare_to_head",
    "current_revision",
    "head_revision",
    "refuse_foreign_database",
    "upgrade",
]

log = logging.getLogger(__name__)

#: The folder of ``env.py`` and ``versions/`` (package data of the wheel).
SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"

#: The revision that describes the schema of every build before migrations existed.
BASELINE = "0001"

#: How the bridge's revisions are named (``0001``, ``0002``, …: ``versions/NNNN_*.py``); an
#: ``alembic_version`` holding another id was written by another application's Alembic.
REVISION_ID = re.compile(r"\d{4}")

#: Columns every build gave each of the bridge's tables (the first build's too,
#: ``tests/support/legacy_schema.py``): a table of one of these names without them belongs to
#: another application, and its database is not adopted.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "tasks": ("task_id", "payload"),
    "events": ("event_id", "body"),
    "audit": ("at", "action"),
    "event_fingerprints": ("fingerprint", "handled_at"),
    "task_approvals": ("task_id", "approvers"),
    "escalation_steps": ("task_id", "step"),
    "escalation_deliveries": ("task_id", "recipient"),
    "unreachable_phones": ("phone", "at"),
    "batches": ("batch_id", "key"),
    "runtime_state": ("key", "value"),
    "leader_lease": ("name", "token"),
}

#: Tables every build had: an un-versioned database is adopted only with both of them.
CORE_TABLES = ("tasks", "events")

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
        does not know but named like the bridge's (:data:`REVISION_ID`), so a newer build
        migrated the database (upgrade this bridge instead); ``"foreign"``: a revision not
        named like the bridge's, written by another application's Alembic.
    """
    head = head_revision()
    if revision == head:
        return "head"
    if revision is None or revision in {script.revision for script in _scripts().walk_revisions()}:
        return "behind"
    return "ahead" if REVISION_ID.fullmatch(revision) else "foreign"


def refuse_foreign_database(conn: Connection, revision: str | None) -> None:
    """Refuse a database that belongs to another application.

    Parameters
    ----------
    conn:
        A connection to the database (only read).
    revision:
        What :func:`current_revision` read from it.

    Raises
    ------
    MigrationError
        When ``revision`` is not named like the bridge's (:data:`REVISION_ID`); or, for an
        un-versioned database (``None``), when it has tables named like the bridge's but not
        both :data:`CORE_TABLES`, or a table named like one of :data:`KEY_COLUMNS` lacks any of
        its key columns (the message names those tables).
    """
    if revision is not None:
        if compare_to_head(revision) == "foreign":
            raise MigrationError(
                f"DATABASE_URL's alembic_version holds revision {revision!r}, which is not the "
                f"bridge's (its revisions are numbered {BASELINE}, 0002, …): the database "
                "belongs to another application; use a database or schema of its own"
            )
        return
    inspector = inspect(conn)
    named = set(inspector.get_table_names()) & set(KEY_COLUMNS)
    if named and not set(CORE_TABLES) <= named:
        raise MigrationError(
            f"DATABASE_URL holds tables named {', '.join(sorted(named))} that are not the "
            f"bridge's (a database of the bridge has {' and '.join(CORE_TABLES)}: every build "
            "had them): use a database or schema of its own"
        )
    foreign = []
    for table in sorted(named):
        columns = {c["name"] for c in inspector.get_columns(table)}
        if not set(KEY_COLUMNS[table]) <= columns:
            foreign.append(table)
    if foreign:
        raise MigrationError(
            f"DATABASE_URL holds tables named {', '.join(foreign)} that are not the bridge's "
            f"(without the columns {'; '.join(', '.join(KEY_COLUMNS[t]) for t in foreign)}): "
            "use a database or schema of its own"
        )


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
        When the database is at a revision this build does not know (made by a newer build),
        or belongs to another application: its ``alembic_version`` holds a revision not named
        like the bridge's, or it has no ``alembic_version`` and tables of the bridge's names
        that are not the bridge's (:func:`refuse_foreign_database`).
    """
    _lock(conn)
    before = current_revision(conn)
    adopted = False
    added: tuple[str, ...] = ()
    refuse_foreign_database(conn, before)
    if before is None:
        existing = set(inspect(conn).get_table_names())
        if existing & set(KEY_COLUMNS):
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
