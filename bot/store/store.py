"""The Store adapter: every open task, message, decision in flight and step taken is a row.

All methods are coroutines over SQLAlchemy Core on a :class:`~bot.store.database.Database`:
each one builds plain values on the event loop, then hands a synchronous unit of work to the
database — writes run on its one writer thread (group commit: many units, one transaction, one
disk sync), reads on its reader threads. Compare-and-set updates (``UPDATE … WHERE``) make the
exactly-once guarantees hold even when two clicks race.

The methods are grouped by concern, one module each: :mod:`bot.store.events` (the event log),
:mod:`bot.store.tasks` (task snapshots and their messages), :mod:`bot.store.task_search`
(the autocomplete's search), :mod:`bot.store.decisions`,
:mod:`bot.store.approvals` (deploy guard), :mod:`bot.store.batches` (smart batching),
:mod:`bot.store.state` (runtime state, health) and :mod:`bot.store.audit`; what they share
(database, clock, task cache and :meth:`~bot.store.base.StoreBase._write_task`) is in
:mod:`bot.store.base`, and rows become :class:`~bot.store.rows.TrackedTask` in
:mod:`bot.store.rows`.
"""

from __future__ import annotations

from .approvals import ApprovalsMixin
from .audit import AuditMixin, AuditRecord
from .batches import BatchesMixin, BatchRecord
from .decisions import DecisionsMixin
from .events import EventRecord, EventsMixin, NewEvent, Recorded
from .rows import TrackedTask, from_ts, to_ts
from .state import StateMixin
from .task_search import TaskSearchMixin
from .tasks import TasksMixin

__all__ = [
    "AuditRecord",
    "BatchRecord",
    "EventRecord",
    "NewEvent",
    "Recorded",
    "Store",
    "TrackedTask",
    "from_ts",
    "to_ts",
]


class Store(
    EventsMixin,
    TasksMixin,
    TaskSearchMixin,
    DecisionsMixin,
    ApprovalsMixin,
    BatchesMixin,
    StateMixin,
    AuditMixin,
):
    """Async persistence for the bridge.

    Parameters
    ----------
    url:
        An SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://…``); the async driver names
        (``sqlite+aiosqlite``, ``postgresql+asyncpg``) are accepted and mapped to synchronous
        drivers by :func:`bot.store.database.sync_url`. The directory of an SQLite file is
        created when missing.
    clock:
        Returns the current Unix time in seconds; injected by tests. It is always called on
        the event loop, never inside a unit of work.

    Every method runs its statements as one unit of work on :attr:`db` (one transaction).
    :meth:`get_task` answers recently read rows from memory, which assumes that this store
    is the only writer of the tasks table: with several bridges on one database only the
    leader writes it (task writes are fenced by the leader lease, :mod:`bot.leadership`) and
    a standby that takes over forgets its cache first; the exactly-once rules do not depend
    on it, they are compare-and-set updates in the database.
    Every write to the tasks table goes through ``_write_task``
    (:meth:`bot.store.base.StoreBase._write_task`), which forgets the cached row when the
    write settles.
    """
