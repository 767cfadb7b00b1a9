"""The bundler's read: pending person-addressed deliveries with what of their task can stop them.

One narrow query (a join on the task's decision and acknowledgement columns) instead of the
deliveries and then every task's full row: parsing thousands of task payloads per flush held
the GIL long enough to make due escalation steps late (bench/ladders.py). The task itself is
read only for what a message shows (:mod:`bot.ladder.bundles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from .database import Database, driver_cursor
from .rows import from_ts

__all__ = ["PendingReminder", "pending_reminders"]

_PENDING_REMINDERS = (
    "SELECT d.id, d.task_id, d.step, d.channel, d.recipient, d.due_at, d.held, "
    "t.task_id, t.decision, t.acknowledged_at "
    "FROM escalation_deliveries d LEFT JOIN tasks t ON t.task_id = d.task_id "
    "WHERE d.status = 'pending' AND d.channel IN ({marks}) ORDER BY d.id"
)


@dataclass(frozen=True, slots=True)
class PendingReminder:
    """A pending delivery with the state of its task that can stop it.

    Attributes
    ----------
    id, task_id, step, channel, recipient, due_at, held
        The delivery's columns (``due_at`` aware UTC).
    task_known
        The task has a row in the store.
    decision
        The task's confirmed decision, or ``None``.
    acknowledged
        Someone acknowledged the task.
    """

    id: int
    task_id: str
    step: str
    channel: str
    recipient: str
    due_at: datetime
    held: bool
    task_known: bool
    decision: str | None
    acknowledged: bool


async def pending_reminders(db: Database, channels: Sequence[str]) -> list[PendingReminder]:
    """Pending deliveries on ``channels``, oldest first, each with its task's decision and
    acknowledgement (one read, no task payloads)."""
    wanted = list(channels)
    if not wanted:
        return []

    def work(conn: Connection) -> list[PendingReminder]:
        cursor, sql = driver_cursor(conn)
        cursor.execute(sql(_PENDING_REMINDERS.format(marks=", ".join("?" * len(wanted)))), wanted)
        return [
            PendingReminder(
                id=r[0],
                task_id=r[1],
                step=r[2],
                channel=r[3],
                recipient=r[4],
                due_at=from_ts(r[5]),  # type: ignore[arg-type]
                held=bool(r[6]),
                task_known=r[7] is not None,
                decision=r[8],
                acknowledged=r[9] is not None,
            )
            for r in cursor.fetchall()
        ]

    return await db.read(work)
