"""The ladder tables' hot-path SQL and row conversions (for :mod:`bot.store.ladder`).

The claims and outcomes of the ladder run through the driver's cursor (column names of
:mod:`bot.store.tables`); this module holds that SQL text and turns rows into the core's
:class:`~escalation.ports.DeliveryRow` and back. Times are Unix seconds in the database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, update
from sqlalchemy.sql.expression import Update

from escalation.deliveries import NewDelivery
from escalation.ports import DeliveryRow

from . import tables as t
from .rows import from_ts

__all__ = [
    "AUDIT_COLUMNS",
    "CHUNK",
    "DELIVERY_COLUMNS",
    "DELIVERY_DETAILS",
    "FINISH_DELIVERIES",
    "FINISH_DELIVERY",
    "INSERT_AUDIT",
    "INSERT_DELIVERY",
    "INSERT_STEP",
    "STEPS_OF",
    "STEP_COLUMNS",
    "audit_row_values",
    "claim_pending_update",
    "delivery_from_row",
    "new_delivery_values",
]

#: Ids per ``IN (…)`` list (SQLite's parameter limit is far above; PostgreSQL's too).
CHUNK = 500

# Hot-path SQL run through the driver (column names of bot.store.tables).
STEP_COLUMNS = ("task_id", "step", "due_at", "taken_at", "late_seconds", "outcome", "status")
DELIVERY_COLUMNS = (
    "task_id",
    "step",
    "channel",
    "recipient",
    "due_at",
    "held",
    "status",
    "created_at",
    "detail",
)
AUDIT_COLUMNS = (
    "at",
    "actor_id",
    "actor_name",
    "via",
    "action",
    "task_id",
    "batch_id",
    "request",
    "outcome",
    "detail",
)

AUDIT_COLUMN_SET = frozenset(AUDIT_COLUMNS)


def _insert_sql(table: str, columns: Sequence[str], suffix: str = "") -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){suffix}"


INSERT_STEP = _insert_sql(
    "escalation_steps", STEP_COLUMNS, " ON CONFLICT (task_id, step) DO NOTHING"
)
INSERT_DELIVERY = _insert_sql("escalation_deliveries", DELIVERY_COLUMNS)
INSERT_AUDIT = _insert_sql("audit", AUDIT_COLUMNS)
DELIVERY_DETAILS = (
    "SELECT id, detail FROM escalation_deliveries WHERE id IN ({marks}) AND detail IS NOT NULL"
)
FINISH_DELIVERIES = (
    "UPDATE escalation_deliveries SET status = ?, finished_at = ?, detail = ? WHERE id IN ({marks})"
)
FINISH_DELIVERY = (
    "UPDATE escalation_deliveries SET status = ?, finished_at = ?, detail = ? WHERE id = ?"
)
STEPS_OF = (
    "SELECT task_id, step, due_at, taken_at, late_seconds, status, outcome "
    "FROM escalation_steps WHERE task_id IN ({marks}) ORDER BY id"
)


def audit_row_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """An audit row (columns of ``bot.store.tables.audit``) as :data:`INSERT_AUDIT` values;
    ``ValueError`` for a key that is not an audit column."""
    unknown = row.keys() - AUDIT_COLUMN_SET
    if unknown:
        raise ValueError(f"not audit columns: {sorted(unknown)}")
    return tuple(row.get(c) for c in AUDIT_COLUMNS)


def claim_pending_update(ids: Sequence[int], ts: float, *, status: str = "claimed") -> Update:
    """``pending`` → ``status`` at ``ts`` (Unix seconds) for those of ``ids`` still pending:
    the compare-and-set of every delivery claim."""
    c = t.escalation_deliveries.c
    return (
        update(t.escalation_deliveries)
        .where(and_(c.id.in_(list(ids)), c.status == "pending"))
        .values(status=status, claimed_at=ts)
    )


def delivery_from_row(r: Any) -> DeliveryRow:
    return DeliveryRow(
        id=r.id,
        task_id=r.task_id,
        step=r.step,
        channel=r.channel,
        recipient=r.recipient,
        due_at=from_ts(r.due_at),  # type: ignore[arg-type]
        held=bool(r.held),
        status=r.status,
        created_at=from_ts(r.created_at),  # type: ignore[arg-type]
        claimed_at=from_ts(r.claimed_at),
        finished_at=from_ts(r.finished_at),
        detail=json.loads(r.detail) if r.detail else {},
    )


def new_delivery_values(
    task_id: str, step: str, delivery: NewDelivery, due_ts: float, created_ts: float
) -> dict[str, Any]:
    """The ``escalation_deliveries`` columns of a new pending delivery (times in Unix s)."""
    return {
        "task_id": task_id,
        "step": step,
        "channel": delivery.channel,
        "recipient": delivery.recipient,
        "due_at": due_ts,
        "held": int(delivery.held),
        "status": "pending",
        "created_at": created_ts,
        "detail": json.dumps(delivery.detail) if delivery.detail else None,
    }
