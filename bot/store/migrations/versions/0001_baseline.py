"""Baseline: the schema of the bridge before migrations existed (main at d86265b).

Every table is created by explicit operations, frozen here: later changes to
:mod:`bot.store.tables` need a new revision. Each table has its own function in
:data:`CREATE_TABLE` so that :mod:`bot.store.migrate` can bring a database made by an older,
un-versioned build up to this baseline (it creates only the tables that database lacks)
before stamping it.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def create_events() -> None:
    """Every event received, stored before it is acknowledged."""
    op.create_table(
        "events",
        sa.Column("event_id", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("processed_at", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_events_processed_at", "events", ["processed_at"])


def create_event_fingerprints() -> None:
    """Content fingerprints of accepted events (de-duplication across webhook and WebSocket)."""
    op.create_table(
        "event_fingerprints",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("handled_at", sa.Float(), nullable=False),
    )


def create_tasks() -> None:
    """One row per factory task, with the message that shows it and its decision."""
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("deadline", sa.Float(), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("posting_claimed_at", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),
        sa.Column("decision_notes", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("decided_by_discord_id", sa.BigInteger(), nullable=True),
        sa.Column("decided_at", sa.Float(), nullable=True),
        sa.Column("decision_source", sa.String(32), nullable=True),
        sa.Column("inflight_decision", sa.String(16), nullable=True),
        sa.Column("inflight_by_discord_id", sa.BigInteger(), nullable=True),
        sa.Column("inflight_by_name", sa.String(200), nullable=True),
        sa.Column("inflight_key", sa.String(64), nullable=True),
        sa.Column("inflight_notes", sa.Text(), nullable=True),
        sa.Column("inflight_at", sa.Float(), nullable=True),
        sa.Column("acknowledged_by_discord_id", sa.BigInteger(), nullable=True),
        sa.Column("acknowledged_by_name", sa.String(200), nullable=True),
        sa.Column("acknowledged_at", sa.Float(), nullable=True),
        sa.Column("snoozed_until", sa.Float(), nullable=True),
        sa.Column("snoozed_by_name", sa.String(200), nullable=True),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_tasks_status", "tasks", ["status"])
    op.create_index("ix_tasks_batch_id", "tasks", ["batch_id"])


def create_task_approvals() -> None:
    """The approval behind a task and the deploy approvals collected for it."""
    op.create_table(
        "task_approvals",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("approval", sa.Text(), nullable=True),
        sa.Column("approval_unread", sa.Integer(), nullable=False),
        sa.Column("approvers", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


def create_escalation_steps() -> None:
    """Escalation steps taken: the unique (task, step) key makes each step happen once."""
    op.create_table(
        "escalation_steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("taken_at", sa.Float(), nullable=False),
        sa.Column("late_seconds", sa.Float(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="done"),
        sa.UniqueConstraint("task_id", "step", name="uq_step_once"),
    )


def create_escalation_deliveries() -> None:
    """Every notification of an escalation step, claimed before its side effect."""
    op.create_table(
        "escalation_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("task_id", sa.String(64), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(200), nullable=False),
        sa.Column("due_at", sa.Float(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("claimed_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.UniqueConstraint("task_id", "step", "channel", "recipient", name="uq_delivery_once"),
    )
    op.create_index("ix_escalation_deliveries_task_id", "escalation_deliveries", ["task_id"])
    op.create_index("ix_escalation_deliveries_status", "escalation_deliveries", ["status"])


def create_unreachable_phones() -> None:
    """Phone numbers that answered Twilio 21610 (STOP)."""
    op.create_table(
        "unreachable_phones",
        sa.Column("phone", sa.String(32), primary_key=True),
        sa.Column("operator", sa.String(200), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
    )


def create_audit() -> None:
    """Append-only audit trail."""
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("actor_name", sa.String(200), nullable=False),
        sa.Column("via", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("task_id", sa.String(64), nullable=True),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("request", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_at", "audit", ["at"])
    op.create_index("ix_audit_task_id", "audit", ["task_id"])


def create_batches() -> None:
    """Batch messages (smart batching)."""
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("posted_at", sa.Float(), nullable=True),
        sa.Column("task_ids", sa.Text(), nullable=True),
    )


def create_runtime_state() -> None:
    """Small JSON documents of runtime state keyed by name."""
    op.create_table(
        "runtime_state",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
    )


#: Table name → the function that creates it (with its indexes), in creation order.
CREATE_TABLE: dict[str, Callable[[], None]] = {
    "events": create_events,
    "event_fingerprints": create_event_fingerprints,
    "tasks": create_tasks,
    "task_approvals": create_task_approvals,
    "escalation_steps": create_escalation_steps,
    "escalation_deliveries": create_escalation_deliveries,
    "unreachable_phones": create_unreachable_phones,
    "audit": create_audit,
    "batches": create_batches,
    "runtime_state": create_runtime_state,
}

#: Columns that older un-versioned builds lacked in tables they had: (table, column) → adds it.
#: (The first build's ``escalation_steps`` had no ``status``, its ``batches`` no ``task_ids``.)
ADD_COLUMN: dict[tuple[str, str], Callable[[], None]] = {
    ("escalation_steps", "status"): lambda: op.add_column(
        "escalation_steps",
        sa.Column("status", sa.String(16), nullable=False, server_default="done"),
    ),
    ("batches", "task_ids"): lambda: op.add_column(
        "batches", sa.Column("task_ids", sa.Text(), nullable=True)
    ),
}


def upgrade() -> None:
    """Create every table of the baseline."""
    for create in CREATE_TABLE.values():
        create()


def downgrade() -> None:
    """Drop every table of the baseline (all data is lost)."""
    for name in reversed(CREATE_TABLE):
        op.drop_table(name)
