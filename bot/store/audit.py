"""The append-only audit trail: every action the bridge takes or is asked to take."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from . import tables as t
from .base import StoreBase
from .rows import from_ts

__all__ = ["AuditMixin", "AuditRecord"]

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
        for observer in self._audit_observers:
            observer(values)

    async def audit_entries(
        self, *, task_id: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit entries, oldest first, filtered by task and/or time (aware UTC)."""
        query = select(t.audit).order_by(t.audit.c.id).limit(limit)
        if task_id is not None:
            query = query.where(t.audit.c.task_id == task_id)
        if since is not None:
            query = query.where(t.audit.c.at >= since.timestamp())

        def work(conn: Connection) -> list[AuditRecord]:
            rows = conn.execute(query)
            return [
                AuditRecord(
                    id=r.id,
                    at=from_ts(r.at),  # type: ignore[arg-type]
                    actor_id=r.actor_id,
                    actor_name=r.actor_name,
                    via=r.via,
                    action=r.action,
                    task_id=r.task_id,
                    batch_id=r.batch_id,
                    request=None if r.request is None else json.loads(r.request),
                    outcome=r.outcome,
                    detail=r.detail,
                )
                for r in rows
            ]

        return await self.db.read(work)
