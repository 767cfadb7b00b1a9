"""Task search for the ``task`` option's autocomplete: one bounded query, never every task.

Discord drops an autocomplete answer that takes more than 3 s (Discord docs, "Receiving and
Responding", ``APPLICATION_COMMAND_AUTOCOMPLETE_RESULT``: up to 25 choices). Reading and
parsing every open task per keystroke took 7–12 s at 50,000 open tasks, so the database does
the matching, the ordering and the limit, and only the rows shown are parsed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, case, cast, func, or_, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from . import tables as t
from .base import StoreBase
from .rows import TRACKED, TrackedTask, row_to_tracked

__all__ = ["SEARCH_LIMIT", "TaskSearchMixin"]

#: Discord: at most 25 autocomplete choices.
SEARCH_LIMIT = 25
#: The SQLite function that lower-cases as Python's :meth:`str.lower` does: SQLite's own
#: ``lower()`` only knows ASCII (SQLite docs, "Built-In Scalar SQL Functions", ``lower(X)``);
#: PostgreSQL's follows the database's ``LC_CTYPE`` (PostgreSQL docs, §9.4 "String Functions").
_SQLITE_LOWER = "fb_lower"

#: How a stored payload (compact JSON, ``Task.model_dump_json``) says ``slaBreached: true``.
_BREACHED = '"slaBreached":true'


def _py_lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _payload(conn: Connection) -> ColumnElement[Any]:
    """The stored payload (contract wire JSON of the ``Task``) as a JSON value.

    On PostgreSQL a ``CAST(payload AS JSON)``; on SQLite the text itself, read by its JSON
    functions: a ``CAST … AS JSON`` there has NUMERIC affinity and turns the text into 0
    (SQLite docs, "Datatypes In SQLite" §3.1 "Determination Of Column Affinity", §4 "CAST").
    """
    if conn.dialect.name == "sqlite":
        return type_coerce(t.tasks.c.payload, JSON)
    return cast(t.tasks.c.payload, JSON)


def _lower(conn: Connection, value: ColumnElement[Any]) -> ColumnElement[Any]:
    """``value`` lower-cased in SQL as :meth:`str.lower` lower-cases what was typed."""
    if conn.dialect.name != "sqlite":
        return func.lower(value)
    sqlite = conn.connection.driver_connection
    sqlite.create_function(_SQLITE_LOWER, 1, _py_lower, deterministic=True)  # type: ignore[union-attr]
    return getattr(func, _SQLITE_LOWER)(value)


class TaskSearchMixin(StoreBase):
    """The store's task search (see :class:`bot.store.Store`)."""

    async def search_open_tasks(
        self, text: str, *, now: float, limit: int = SEARCH_LIMIT
    ) -> list[TrackedTask]:
        """Open tasks whose id or title contains ``text``, most urgent first (at most ``limit``).

        Parameters
        ----------
        text:
            What was typed: surrounding blanks are ignored, case is ignored, ``%`` and ``_``
            are plain characters (not SQL ``LIKE`` wildcards). Empty matches every open task.
        now:
            The current Unix time: a task whose deadline is at or before it is overdue.
        limit:
            How many tasks at most (Discord: 25 autocomplete choices).

        Returns
        -------
        list of TrackedTask
            Tasks with no confirmed decision (as :meth:`~bot.store.tasks.TasksMixin.open_tasks`):
            overdue ones (SLA breached by the factory, or past their deadline) first, then by
            deadline, then by task id. One read; only the rows returned are parsed.
        """
        needle = text.strip().lower()

        def work(conn: Connection) -> list[TrackedTask]:
            payload = _payload(conn)
            tasks = t.tasks.c
            query = TRACKED.where(tasks.decision.is_(None))
            if needle:
                query = query.where(
                    or_(
                        # ids are ASCII (escalation.models.TASK_ID_PATTERN): SQL's lower()
                        func.lower(tasks.task_id).contains(needle, autoescape=True),
                        _lower(conn, payload["title"].as_string()).contains(
                            needle, autoescape=True
                        ),
                    )
                )
            overdue = case(
                (tasks.deadline <= now, 0),
                # SLA breached, says the factory: only a payload with this text can say so (it
                # is compact JSON, Task.model_dump_json), so only those are parsed
                (~tasks.payload.contains(_BREACHED, autoescape=True), 1),
                (payload["slaBreached"].as_boolean(), 0),
                else_=1,
            )
            most_urgent_first = (overdue, tasks.deadline, tasks.task_id)
            rows = conn.execute(query.order_by(*most_urgent_first).limit(limit))
            return [row_to_tracked(r) for r in rows]

        return await self.db.read(work)
