"""Decisions: the compare-and-set that marks one in flight, its confirmation or abort."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, bindparam, update
from sqlalchemy.engine import Connection

from escalation.models import Task

from . import tables as t
from .base import StoreBase
from .rows import TASK_ROW, TRACKED, TrackedTask, row_to_tracked

__all__ = ["GONE", "NO_DECISION_IN_FLIGHT", "DecisionsMixin"]

#: ``tasks.decision`` of a task the factory no longer has (``GET /v1/tasks/{id}`` answered 404
#: or 410): closed by the bridge, not decided by anyone (no contract ``TaskDecision``).
GONE = "gone"

#: The in-flight decision's columns, as the SET of a task row with none (confirmed, aborted,
#: or the task gone); a compare-and-set fills them (:meth:`DecisionsMixin.begin_decision`).
NO_DECISION_IN_FLIGHT: dict[str, None] = dict.fromkeys(
    (
        "inflight_decision",
        "inflight_by_discord_id",
        "inflight_by_name",
        "inflight_key",
        "inflight_notes",
        "inflight_at",
    )
)

_BEGIN_DECISION = (
    update(t.tasks)
    .where(
        and_(
            t.tasks.c.task_id == bindparam("b_task_id"),
            t.tasks.c.decision.is_(None),
            t.tasks.c.inflight_decision.is_(None),
        )
    )
    .values({column: bindparam(column) for column in NO_DECISION_IN_FLIGHT})
)


class DecisionsMixin(StoreBase):
    """The store's decision methods (see :class:`bot.store.Store`)."""

    async def begin_decision(
        self,
        task_id: str,
        decision: str,
        *,
        discord_user_id: int | None,
        name: str,
        key: str,
        notes: str | None,
    ) -> TrackedTask | None:
        """Compare-and-set: mark a decision in flight.

        Returns the updated task when this caller won, ``None`` when the task is unknown,
        already decided, or another decision is already in flight (the caller then reads the
        task to tell the person who was first).
        """
        now = self._clock()

        def work(conn: Connection) -> TrackedTask | None:
            result = conn.execute(
                _BEGIN_DECISION,
                {
                    "b_task_id": task_id,
                    "inflight_decision": decision,
                    "inflight_by_discord_id": discord_user_id,
                    "inflight_by_name": name,
                    "inflight_key": key,
                    "inflight_notes": notes,
                    "inflight_at": now,
                },
            )
            if result.rowcount != 1:
                return None
            row = conn.execute(TASK_ROW, {"b_task_id": task_id}).one()
            return row_to_tracked(row)

        return await self._write_task(task_id, work)

    async def abort_decision(self, task_id: str, key: str) -> None:
        """Clear an in-flight decision that the factory did not confirm (buttons stay live)."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.inflight_key == key))
                .values(NO_DECISION_IN_FLIGHT)
            )

        await self._write_task(task_id, work)

    async def confirm_decision(
        self,
        task: Task,
        *,
        decision: str,
        decided_by: str,
        discord_user_id: int | None,
        notes: str | None,
        source: str,
        at: datetime,
    ) -> TrackedTask:
        """Record a decision the factory confirmed; clears any in-flight marker.

        A decision already recorded is kept (the first confirmed one wins).
        """
        task_id = task.id
        payload = task.model_dump_json(by_alias=True)
        decided_at = at.timestamp()
        now = self._clock()

        def work(conn: Connection) -> TrackedTask:
            conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.decision.is_(None)))
                .values(
                    payload=payload,
                    status="completed",
                    decision=decision,
                    decision_notes=notes,
                    decided_by=decided_by,
                    decided_by_discord_id=discord_user_id,
                    decided_at=decided_at,
                    decision_source=source,
                    updated_at=now,
                )
            )
            conn.execute(
                update(t.tasks).where(t.tasks.c.task_id == task_id).values(NO_DECISION_IN_FLIGHT)
            )
            row = conn.execute(TASK_ROW, {"b_task_id": task_id}).one()
            return row_to_tracked(row)

        return await self._write_task(task_id, work)

    async def inflight_decisions(self) -> list[TrackedTask]:
        """Tasks with a decision in flight (a crash may have left them; they are re-sent)."""

        def work(conn: Connection) -> list[TrackedTask]:
            rows = conn.execute(
                TRACKED.where(
                    and_(t.tasks.c.inflight_decision.is_not(None), t.tasks.c.decision.is_(None))
                )
            )
            return [row_to_tracked(r) for r in rows]

        return await self.db.read(work)

    async def close_gone(self, task_id: str, *, reason: str, at: datetime) -> TrackedTask | None:
        """Close an open task the factory no longer has (:data:`GONE`): it leaves the open
        tasks (its ladder stops, its buttons go) and any decision in flight on it is dropped
        (a re-send could only be refused). A task decided meanwhile is left as it is.

        Parameters
        ----------
        task_id:
            The task.
        reason:
            Why, shown on its message (e.g. ``404 NOT_FOUND: …``).
        at:
            When the factory said so (aware UTC).

        Returns
        -------
        TrackedTask | None
            The task as stored now (``decision`` :data:`GONE` unless it was decided before);
            ``None`` for a task the bridge does not know.
        """
        now = self._clock()

        def work(conn: Connection) -> TrackedTask | None:
            conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.decision.is_(None)))
                .values(
                    decision=GONE,
                    decision_notes=reason[:1000],
                    decided_by="the factory",
                    decided_by_discord_id=None,
                    decided_at=at.timestamp(),
                    decision_source="factory",
                    updated_at=now,
                    **NO_DECISION_IN_FLIGHT,
                )
            )
            row = conn.execute(TASK_ROW, {"b_task_id": task_id}).first()
            return None if row is None else row_to_tracked(row)

        return await self._write_task(task_id, work)
