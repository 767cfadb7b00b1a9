"""Schemas of bridge builds from before migrations, frozen for the upgrade tests.

:func:`main_before_migrations` is ``bot/store/tables.py`` of main at d86265b (the last build
that made its schema with ``metadata.create_all``); :func:`first_build` is the first build's
(83ad473: no ``escalation_steps.status``, no ``batches.task_ids``, five tables fewer). Never
edit these to follow ``bot/store/tables.py``: they are what users' databases hold.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = ["LATER_TABLES", "first_build", "main_before_migrations"]

#: Tables the first build did not have.
LATER_TABLES = (
    "event_fingerprints",
    "task_approvals",
    "escalation_deliveries",
    "unreachable_phones",
    "runtime_state",
)


def main_before_migrations() -> MetaData:
    """The schema ``metadata.create_all`` made at main d86265b."""
    metadata = MetaData()
    Table(
        "events",
        metadata,
        Column("event_id", String(200), primary_key=True),
        Column("type", String(64), nullable=False),
        Column("source", String(16), nullable=False),
        Column("received_at", Float, nullable=False),
        Column("body", Text, nullable=False),
        Column("processed_at", Float, nullable=True, index=True),
        Column("error", Text, nullable=True),
    )
    Table(
        "event_fingerprints",
        metadata,
        Column("fingerprint", String(64), primary_key=True),
        Column("type", String(64), nullable=False),
        Column("handled_at", Float, nullable=False),
    )
    Table(
        "tasks",
        metadata,
        Column("task_id", String(64), primary_key=True),
        Column("payload", Text, nullable=False),  # latest Task, contract wire JSON
        Column("priority", String(16), nullable=False),
        Column("status", String(16), nullable=False, index=True),
        Column("created_at", Float, nullable=False),
        Column("deadline", Float, nullable=False),
        Column("channel_id", BigInteger, nullable=True),
        Column("message_id", BigInteger, nullable=True),
        Column("batch_id", String(64), nullable=True, index=True),
        Column("posting_claimed_at", Float, nullable=True),
        Column("decision", String(16), nullable=True),
        Column("decision_notes", Text, nullable=True),
        Column("decided_by", String(200), nullable=True),
        Column("decided_by_discord_id", BigInteger, nullable=True),
        Column("decided_at", Float, nullable=True),
        Column("decision_source", String(32), nullable=True),
        Column("inflight_decision", String(16), nullable=True),
        Column("inflight_by_discord_id", BigInteger, nullable=True),
        Column("inflight_by_name", String(200), nullable=True),
        Column("inflight_key", String(64), nullable=True),
        Column("inflight_notes", Text, nullable=True),
        Column("inflight_at", Float, nullable=True),
        Column("acknowledged_by_discord_id", BigInteger, nullable=True),
        Column("acknowledged_by_name", String(200), nullable=True),
        Column("acknowledged_at", Float, nullable=True),
        Column("snoozed_until", Float, nullable=True),
        Column("snoozed_by_name", String(200), nullable=True),
        Column("updated_at", Float, nullable=False),
    )
    Table(
        "task_approvals",
        metadata,
        Column("task_id", String(64), primary_key=True),
        Column("approval", Text, nullable=True),  # Approval, contract wire JSON
        Column("approval_unread", Integer, nullable=False, default=0),  # lookup failed: guard
        Column("approvers", Text, nullable=False, default="[]"),  # JSON list of DeployApproval
        Column("version", Integer, nullable=False, default=0),
        Column("updated_at", Float, nullable=False),
    )
    Table(
        "escalation_steps",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("task_id", String(64), nullable=False),
        Column("step", String(32), nullable=False),
        Column("due_at", Float, nullable=False),
        Column("taken_at", Float, nullable=False),
        Column("late_seconds", Float, nullable=False, default=0.0),
        Column("outcome", Text, nullable=False),  # JSON: who was notified, through what, results
        Column("status", String(16), nullable=False, default="done", server_default="done"),
        UniqueConstraint("task_id", "step", name="uq_step_once"),
    )
    Table(
        "escalation_deliveries",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("task_id", String(64), nullable=False, index=True),
        Column("step", String(32), nullable=False),
        Column("channel", String(16), nullable=False),  # dm, sms, call, reply, alert, reassign, …
        Column("recipient", String(200), nullable=False),  # roster name, "task", "alerts", …
        Column("due_at", Float, nullable=False),
        Column("held", Integer, nullable=False, default=0),  # held for quiet hours (digest)
        Column("status", String(16), nullable=False, index=True),
        Column("created_at", Float, nullable=False),
        Column("claimed_at", Float, nullable=True),
        Column("finished_at", Float, nullable=True),
        Column("detail", Text, nullable=True),  # JSON: address, provider id, error, fallback
        UniqueConstraint("task_id", "step", "channel", "recipient", name="uq_delivery_once"),
    )
    Table(
        "unreachable_phones",
        metadata,
        Column("phone", String(32), primary_key=True),
        Column("operator", String(200), nullable=True),
        Column("code", Integer, nullable=True),
        Column("at", Float, nullable=False),
    )
    Table(
        "audit",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", Float, nullable=False, index=True),
        Column("actor_id", String(64), nullable=True),
        Column("actor_name", String(200), nullable=False),
        Column("via", String(32), nullable=False),  # button, command, modal, event, system
        Column("action", String(64), nullable=False),
        Column("task_id", String(64), nullable=True, index=True),
        Column("batch_id", String(64), nullable=True),
        Column("request", Text, nullable=True),  # JSON of what was asked
        Column("outcome", String(32), nullable=False),  # ok, refused, conflict, failed, ...
        Column("detail", Text, nullable=True),  # what the factory answered, or why
    )
    Table(
        "batches",
        metadata,
        Column("batch_id", String(64), primary_key=True),
        Column("key", String(128), nullable=False),
        Column("channel_id", BigInteger, nullable=True),
        Column("message_id", BigInteger, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("posted_at", Float, nullable=True),
        Column("task_ids", Text, nullable=True),
    )
    Table(
        "runtime_state",
        metadata,
        Column("key", String(64), primary_key=True),
        Column("value", Text, nullable=False),  # JSON
        Column("updated_at", Float, nullable=False),
    )
    return metadata


def first_build() -> MetaData:
    """The schema of the first build (83ad473)."""
    metadata = MetaData()
    for table in main_before_migrations().sorted_tables:
        if table.name in LATER_TABLES:
            continue
        columns = [
            c._copy()
            for c in table.columns
            if (table.name, c.name) not in {("escalation_steps", "status"), ("batches", "task_ids")}
        ]
        constraints = [
            UniqueConstraint(*c.columns.keys(), name=c.name)
            for c in table.constraints
            if isinstance(c, UniqueConstraint)
        ]
        Table(table.name, metadata, *columns, *constraints)
    return metadata
