"""The append-only audit trail: every action the bridge takes or is asked to take."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, insert, inspect, select
from sqlalchemy.engine import Connection

from . import tables as t
from .base import StoreBase
from .rows import from_ts

__all__ = ["AuditMixin", "AuditPage", "AuditRecord", "AuditUnreadable", "read_audit"]

#: Built once: the columns come from each entry's parameters, so SQLAlchemy reuses its cache
#: key and compiled form (an entry is written for every message posted).
_INSERT_AUDIT = insert(t.audit)


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry: who did what, through what, on which task, and what came of it."""

    id: int
    at: datetime
    actor_id: str | None
    actor_name: str
    via: str
    action: str
    task_id: str | None
    batch_id: str | None
    request: dict[str, Any] | None
    outcome: str
    detail: str | None


class AuditMixin(StoreBase):
    """The store's audit methods (see :class:`bot.store.Store`)."""

    def add_audit_observer(self, observer: Callable[[dict[str, Any]], None]) -> None:
        """Call ``observer`` with the values of every audit entry once it is written
        (``bot.metrics.BridgeMetrics.observe_audit``); it must not raise or block."""
        self._audit_observers.append(observer)

    def audit_written(self, entry: dict[str, Any]) -> None:
        """Tell the observers of an audit entry another store wrote in its own transaction
        (:class:`bot.store.ladder.LadderStore`: a step's claim, a delivery's outcome), so that
        what the metrics count does not depend on which store wrote the entry."""
        for observer in self._audit_observers:
            observer(entry)

    async def audit(
        self,
        *,
        actor_name: str,
        via: str,
        action: str,
        outcome: str,
        actor_id: str | None = None,
        task_id: str | None = None,
        batch_id: str | None = None,
        request: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> None:
        """Append one audit entry (never updated, never deleted)."""
        values: dict[str, Any] = {
            "at": self._clock(),
            "actor_id": actor_id,
            "actor_name": actor_name,
            "via": via,
            "action": action,
            "task_id": task_id,
            "batch_id": batch_id,
            "request": None if request is None else json.dumps(request),
            "outcome": outcome,
            "detail": detail,
        }

        def work(conn: Connection) -> None:
            conn.execute(_INSERT_AUDIT, values)

        await self.db.write(work)
        self.audit_written(values)

    async def audit_entries(
        self, *, task_id: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """The newest ``limit`` audit entries, oldest first, filtered by task and/or time (aware
        UTC); :func:`read_audit` also says how many earlier ones were left out."""
        page = await self.db.read(
            lambda conn: read_audit(conn, task_id=task_id, since=since, limit=limit)
        )
        return page.entries


class AuditUnreadable(Exception):
    """The database has no audit trail this build can read (the message says why)."""


@dataclass(frozen=True)
class AuditPage:
    """What :func:`read_audit` found.

    ``entries`` are the newest entries that match, oldest first; ``earlier`` counts the older
    ones that match too but were left out by the limit (0: nothing was left out).
    """

    entries: list[AuditRecord]
    earlier: int


#: Columns an entry cannot be shown without (the others read as ``None`` when a database of
#: another build lacks them).
_REQUIRED = ("id", "at", "actor_name", "via", "action", "outcome")


def read_audit(
    conn: Connection,
    *,
    task_id: str | None = None,
    since: datetime | None = None,
    limit: int = 1000,
    tolerant: bool = False,
) -> AuditPage:
    """The newest ``limit`` audit entries matching the filters, oldest first, and how many
    earlier ones matched too (one read transaction: the count and the entries agree).

    Parameters
    ----------
    conn:
        A connection in a (read) transaction.
    task_id, since:
        Only this task's entries; only entries at or after this aware time.
    limit:
        At most this many entries (at least 1).
    tolerant:
        Read a database this build did not migrate (``factory-bridge audit`` on a database of
        an older or newer build): select only the columns its audit table has.

    Raises
    ------
    AuditUnreadable
        ``tolerant`` and the database has no audit table, or it lacks a column an entry needs.
    ValueError
        ``limit`` below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    columns = list(t.audit.c)
    if tolerant:
        inspector = inspect(conn)
        if not inspector.has_table("audit"):
            raise AuditUnreadable(
                "it has no audit table: no bridge has used this database yet "
                "(or DATABASE_URL names another database)"
            )
        present = {column["name"] for column in inspector.get_columns("audit")}
        needed = [*_REQUIRED, *(["task_id"] if task_id is not None else [])]
        missing = [name for name in needed if name not in present]
        if missing:
            raise AuditUnreadable(
                f"its audit table has no column {', '.join(missing)}: "
                "read it with the factory-bridge build that migrated it"
            )
        columns = [c for c in columns if c.name in present]
    where: list[ColumnElement[bool]] = []
    if task_id is not None:
        where.append(t.audit.c.task_id == task_id)
    if since is not None:
        where.append(t.audit.c.at >= since.timestamp())
    newest = select(*columns).where(*where).order_by(t.audit.c.id.desc()).limit(limit)
    rows = list(conn.execute(newest).mappings())
    rows.reverse()
    earlier = 0
    if len(rows) == limit:  # there may be more: count them (same snapshot)
        total = conn.execute(select(func.count()).select_from(t.audit).where(*where)).scalar()
        earlier = int(total or 0) - len(rows)
    entries = [
        AuditRecord(
            id=r["id"],
            at=from_ts(r["at"]),  # type: ignore[arg-type]
            actor_id=r.get("actor_id"),
            actor_name=r["actor_name"],
            via=r["via"],
            action=r["action"],
            task_id=r.get("task_id"),
            batch_id=r.get("batch_id"),
            request=None if r.get("request") is None else json.loads(r["request"]),
            outcome=r["outcome"],
            detail=r.get("detail"),
        )
        for r in rows
    ]
    return AuditPage(entries=entries, earlier=earlier)
