"""Rows of the tasks table as :class:`TrackedTask`, and the statements that read them.

Timestamps are stored as Unix seconds (UTC) in floats (see :mod:`bot.store.tables`);
:func:`to_ts` and :func:`from_ts` convert them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select

from escalation.deploy_guard import (
    DeployApproval,
    GuardSignal,
    approvals_required,
    guard_signals,
)
from escalation.models import Approval, Task
from escalation.policy import FIRST_INSTANT, LAST_INSTANT

from . import tables as t

__all__ = [
    "TASK_ROW",
    "TRACKED",
    "TrackedTask",
    "approval_of",
    "approvers_of",
    "from_ts",
    "row_to_tracked",
    "to_ts",
]

# Statements of the click path built once: SQLAlchemy then reuses their cache key and compiled
# form instead of rebuilding them per call (on the writer thread, that work holds the GIL the
# event loop needs to answer interactions).
#: A task row with what the bridge knows of its approval (outer join: most tasks have none).
TRACKED = select(
    t.tasks,
    t.task_approvals.c.approval.label("gate_approval"),
    t.task_approvals.c.approval_unread.label("gate_unread"),
    t.task_approvals.c.approvers.label("gate_approvers"),
).select_from(t.tasks.outerjoin(t.task_approvals, t.task_approvals.c.task_id == t.tasks.c.task_id))
TASK_ROW = TRACKED.where(t.tasks.c.task_id == bindparam("b_task_id"))


#: Unix seconds of the first and last instants a UTC ``datetime`` holds, as stored floats. The
#: last one rounds up to ``253402300800.0`` (``10000-01-01T00:00:00Z``): a float near it cannot
#: hold microseconds (one step is about 30 µs there).
_FIRST_TS = FIRST_INSTANT.timestamp()
_LAST_TS = LAST_INSTANT.timestamp()


def to_ts(value: datetime | None) -> float | None:
    """Aware datetime → Unix seconds (``None`` stays ``None``)."""
    return None if value is None else value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    """Unix seconds → aware UTC datetime (``None`` stays ``None``).

    Parameters
    ----------
    value
        Unix seconds (UTC) as stored by :func:`to_ts`, or ``None``.

    Returns
    -------
    datetime or None
        Aware UTC. A value at or past the last instant a ``datetime`` holds is
        :data:`escalation.policy.LAST_INSTANT` (and one at or before the first,
        :data:`escalation.policy.FIRST_INSTANT`): a deadline of ``9999-12-31T23:59:59.9999999Z``
        (.NET's ``DateTime.MaxValue``, a "no deadline" value, factory contract §1.4 ``Task``)
        is stored as ``253402300800.0``, which ``datetime`` cannot read back as such.
    """
    if value is None:
        return None
    if value >= _LAST_TS:
        return LAST_INSTANT
    if value <= _FIRST_TS:
        return FIRST_INSTANT
    return datetime.fromtimestamp(value, tz=UTC)


@dataclass(frozen=True)
class TrackedTask:
    """A task as the bridge tracks it: the factory's Task plus what the bridge did with it.

    Times are aware UTC datetimes.
    """

    task: Task
    deadline: datetime
    channel_id: int | None
    message_id: int | None
    batch_id: str | None
    decision: str | None
    decision_notes: str | None
    decided_by: str | None
    decided_by_discord_id: int | None
    decided_at: datetime | None
    decision_source: str | None
    inflight_decision: str | None
    inflight_by_discord_id: int | None
    inflight_by_name: str | None
    inflight_key: str | None
    acknowledged_by_discord_id: int | None
    acknowledged_by_name: str | None
    acknowledged_at: datetime | None
    snoozed_until: datetime | None
    snoozed_by_name: str | None
    inflight_notes: str | None = None
    inflight_at: datetime | None = None
    approval: Approval | None = None
    approval_unread: bool = False
    deploy_approvals: tuple[DeployApproval, ...] = ()

    @property
    def guard_signals(self) -> tuple[GuardSignal, ...]:
        """Why approving this task may ship to production (see :mod:`escalation.deploy_guard`)."""
        return guard_signals(self.task, self.approval, approval_unread=self.approval_unread)

    def approvals_required(self, configured: int) -> int:
        """Distinct deploy approvers this task needs, given ``DEPLOY_REQUIRED_APPROVERS``
        (see :func:`escalation.deploy_guard.approvals_required`)."""
        return approvals_required(
            self.task, self.approval, configured, approval_unread=self.approval_unread
        )

    @property
    def guarded(self) -> bool:
        """True when approving this task may ship to production: never batched or bulk
        approved; needs a deploy approver and the typed ``DEPLOY``."""
        return bool(self.guard_signals)

    @property
    def task_id(self) -> str:
        """The factory's task id."""
        return self.task.id

    @property
    def approval_id(self) -> str | None:
        """The id of the factory ``Approval`` behind the task (contract §1.4), if known."""
        return self.approval.id if self.approval is not None else None

    @property
    def is_decided(self) -> bool:
        """True once a decision is confirmed (by the factory, or seen in an event)."""
        return self.decision is not None

    @property
    def has_message(self) -> bool:
        """True when a Discord message shows this task."""
        return self.message_id is not None


def row_to_tracked(row: Any) -> TrackedTask:
    """A row of :data:`TRACKED` (tasks row + approval columns) as a :class:`TrackedTask`."""
    m = row._mapping
    return TrackedTask(
        task=Task.model_validate_json(m["payload"]),
        deadline=from_ts(m["deadline"]),  # type: ignore[arg-type]
        channel_id=m["channel_id"],
        message_id=m["message_id"],
        batch_id=m["batch_id"],
        decision=m["decision"],
        decision_notes=m["decision_notes"],
        decided_by=m["decided_by"],
        decided_by_discord_id=m["decided_by_discord_id"],
        decided_at=from_ts(m["decided_at"]),
        decision_source=m["decision_source"],
        inflight_decision=m["inflight_decision"],
        inflight_by_discord_id=m["inflight_by_discord_id"],
        inflight_by_name=m["inflight_by_name"],
        inflight_key=m["inflight_key"],
        acknowledged_by_discord_id=m["acknowledged_by_discord_id"],
        acknowledged_by_name=m["acknowledged_by_name"],
        acknowledged_at=from_ts(m["acknowledged_at"]),
        snoozed_until=from_ts(m["snoozed_until"]),
        snoozed_by_name=m["snoozed_by_name"],
        inflight_notes=m["inflight_notes"],
        inflight_at=from_ts(m["inflight_at"]),
        approval=approval_of(m.get("gate_approval")),
        approval_unread=bool(m.get("gate_unread")),
        deploy_approvals=approvers_of(m.get("gate_approvers")),
    )


def approval_of(text: str | None) -> Approval | None:
    """The stored approval JSON (contract §1.4 ``Approval``) as a model; ``None`` when empty."""
    return None if not text else Approval.model_validate_json(text)


def approvers_of(text: str | None) -> tuple[DeployApproval, ...]:
    """The stored JSON list of deploy approvals, oldest first; ``()`` when empty."""
    if not text:
        return ()
    return tuple(DeployApproval.from_wire(entry) for entry in json.loads(text))
