"""SQLAlchemy tables: the database is the truth, timers and memory are disposable.

Timestamps are stored as Unix seconds (UTC) in floats so that SQLite and PostgreSQL compare
them the same way. JSON documents are stored as text. Strings are :class:`BoundedString`:
clipped to their column's length when written, because SQLite keeps an overlong value and
PostgreSQL refuses it (the whole write would be lost). Ids are validated long before (contract
§1.4 task ids ≤ 64, event ids ≤ 200); what gets clipped is free text such as names.

A change here needs a new migration revision in ``bot/store/migrations/versions/``.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect

__all__ = [
    "BoundedString",
    "audit",
    "batches",
    "escalation_deliveries",
    "escalation_steps",
    "event_fingerprints",
    "events",
    "leader_lease",
    "metadata",
    "runtime_state",
    "task_approvals",
    "tasks",
    "unreachable_phones",
]


class BoundedString(TypeDecorator[str]):
    """``VARCHAR(length)`` whose written values are clipped to ``length`` characters.

    The database type is a plain ``String(length)`` (migrations and other readers see
    nothing else); only what the bridge writes is cut, so that SQLite and PostgreSQL store
    the same thing.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        """``value`` cut to the column's length (``None`` and short values unchanged)."""
        length: int | None = getattr(self.impl_instance, "length", None)
        if value is not None and length is not None and len(value) > length:
            return value[:length]
        return value


metadata = MetaData()

#: Every event received (webhook, WebSocket), stored before it is acknowledged (202).
events = Table(
    "events",
    metadata,
    Column("event_id", BoundedString(200), primary_key=True),
    Column("type", BoundedString(64), nullable=False),
    Column("source", BoundedString(16), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("body", Text, nullable=False),
    Column("processed_at", Float, nullable=True),
    Column("error", Text, nullable=True),
    # the processor's queue: the unprocessed (NULL) events in arrival order, read a run at a
    # time without sorting them all (bot.store.events unprocessed_events)
    Index("ix_events_unprocessed", "processed_at", "received_at", "event_id"),
)

#: Content fingerprints (sha256 of the canonical WsEvent JSON) of events accepted: the same
#: event delivered by webhook and by WebSocket has two ids but one fingerprint. (``handled_at``
#: is when the content was first accepted.)
event_fingerprints = Table(
    "event_fingerprints",
    metadata,
    Column("fingerprint", BoundedString(64), primary_key=True),
    Column("type", BoundedString(64), nullable=False),
    Column("handled_at", Float, nullable=False),
)

#: One row per factory task the bridge knows, with the message that shows it.
tasks = Table(
    "tasks",
    metadata,
    Column("task_id", BoundedString(64), primary_key=True),
    Column("payload", Text, nullable=False),  # latest Task, contract wire JSON
    Column("priority", BoundedString(16), nullable=False),
    Column("status", BoundedString(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("deadline", Float, nullable=False),
    # the Discord message that shows the task (single message or a batch message)
    Column("channel_id", BigInteger, nullable=True),
    Column("message_id", BigInteger, nullable=True),
    Column("batch_id", BoundedString(64), nullable=True, index=True),
    Column("posting_claimed_at", Float, nullable=True),
    # the decision, once the factory confirmed it
    Column("decision", BoundedString(16), nullable=True),
    Column("decision_notes", Text, nullable=True),
    Column("decided_by", BoundedString(200), nullable=True),
    Column("decided_by_discord_id", BigInteger, nullable=True),
    Column("decided_at", Float, nullable=True),
    Column("decision_source", BoundedString(32), nullable=True),
    # a decision being sent to the factory (compare-and-set guards it)
    Column("inflight_decision", BoundedString(16), nullable=True),
    Column("inflight_by_discord_id", BigInteger, nullable=True),
    Column("inflight_by_name", BoundedString(200), nullable=True),
    Column("inflight_key", BoundedString(64), nullable=True),
    Column("inflight_notes", Text, nullable=True),
    Column("inflight_at", Float, nullable=True),
    # acknowledge and snooze (escalation)
    Column("acknowledged_by_discord_id", BigInteger, nullable=True),
    Column("acknowledged_by_name", BoundedString(200), nullable=True),
    Column("acknowledged_at", Float, nullable=True),
    Column("snoozed_until", Float, nullable=True),
    Column("snoozed_by_name", BoundedString(200), nullable=True),
    Column("updated_at", Float, nullable=False),
    # the open tasks only (no decision): their reads and counts (the ladder's rebuild, /metrics,
    # an SMS reply, reconciliation) cost what is open, not every task ever decided
    Index(
        "ix_tasks_open",
        "task_id",
        sqlite_where=text("decision IS NULL"),
        postgresql_where=text("decision IS NULL"),
    ),
)

#: What the bridge knows of the approval behind a task (contract §1.4 ``Approval``) and the
#: deploy approvals collected for it (two-person rule). A table of its own, so that databases
#: made before it need nothing but ``create_all``. ``version`` guards each change
#: (compare-and-set), so two processes never lose an approval.
task_approvals = Table(
    "task_approvals",
    metadata,
    Column("task_id", BoundedString(64), primary_key=True),
    Column("approval", Text, nullable=True),  # Approval, contract wire JSON
    Column("approval_unread", Integer, nullable=False, default=0),  # lookup failed: guard
    Column("approvers", Text, nullable=False, default="[]"),  # JSON list of DeployApproval
    Column("version", Integer, nullable=False, default=0),
    Column("updated_at", Float, nullable=False),
)

#: Escalation steps taken: the unique (task, step) key makes each step happen once.
escalation_steps = Table(
    "escalation_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", BoundedString(64), nullable=False),
    Column("step", BoundedString(32), nullable=False),
    Column("due_at", Float, nullable=False),
    Column("taken_at", Float, nullable=False),
    Column("late_seconds", Float, nullable=False, default=0.0),
    Column("outcome", Text, nullable=False),  # JSON: who was notified, through what, results
    # "claimed" (written before any side effect) → "done" (outcome filled in); see
    # escalation.service for what a restart does with a claimed-but-unfinished step
    Column("status", BoundedString(16), nullable=False, default="done", server_default="done"),
    UniqueConstraint("task_id", "step", name="uq_step_once"),
)

#: Every notification or action of an escalation step (one DM, one SMS, one reply, the call,
#: the reassign …), claimed before its side effect: the unique key makes each happen at most
#: once, across restarts. DM/SMS rows wait as ``pending`` for the bundler (one message per
#: person and channel per bundle window; one digest after quiet hours).
escalation_deliveries = Table(
    "escalation_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", BoundedString(64), nullable=False, index=True),
    Column("step", BoundedString(32), nullable=False),
    Column(
        "channel", BoundedString(16), nullable=False
    ),  # dm, sms, call, reply, alert, reassign, …
    Column("recipient", BoundedString(200), nullable=False),  # roster name, "task", "alerts", …
    Column("due_at", Float, nullable=False),
    Column("held", Integer, nullable=False, default=0),  # held for quiet hours (digest)
    # pending, reserved (a bundle's earlier claim page), claimed, sent, failed, skipped,
    # unreachable, unknown, cancelled
    Column("status", BoundedString(16), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("claimed_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("detail", Text, nullable=True),  # JSON: address, provider id, error, fallback
    UniqueConstraint("task_id", "step", "channel", "recipient", name="uq_delivery_once"),
)

#: Phone numbers that answered Twilio 21610 (the person replied STOP): never texted or called
#: again until removed from this table.
unreachable_phones = Table(
    "unreachable_phones",
    metadata,
    Column("phone", BoundedString(32), primary_key=True),
    Column("operator", BoundedString(200), nullable=True),
    Column("code", Integer, nullable=True),
    Column("at", Float, nullable=False),
)

#: Append-only audit trail of every action the bridge takes or is asked to take.
audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor_id", BoundedString(64), nullable=True),
    Column("actor_name", BoundedString(200), nullable=False),
    Column("via", BoundedString(32), nullable=False),  # button, command, modal, event, system
    Column("action", BoundedString(64), nullable=False),
    Column("task_id", BoundedString(64), nullable=True, index=True),
    Column("batch_id", BoundedString(64), nullable=True),
    Column("request", Text, nullable=True),  # JSON of what was asked
    Column("outcome", BoundedString(32), nullable=False),  # ok, refused, conflict, failed, ...
    Column("detail", Text, nullable=True),  # what the factory answered, or why
)

#: Batch messages (smart batching): one message shows several routine tasks.
batches = Table(
    "batches",
    metadata,
    Column("batch_id", BoundedString(64), primary_key=True),
    Column("key", BoundedString(128), nullable=False),
    Column("channel_id", BigInteger, nullable=True),
    Column("message_id", BigInteger, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("posted_at", Float, nullable=True),
    # JSON list of the task ids the message shows, in display order (smart batching)
    Column("task_ids", Text, nullable=True),
)

#: Small JSON documents of runtime state keyed by name (e.g. the batcher's snapshot), so that
#: a restart loses nothing that only lived in memory.
runtime_state = Table(
    "runtime_state",
    metadata,
    Column("key", BoundedString(64), primary_key=True),
    Column("value", Text, nullable=False),  # JSON
    Column("updated_at", Float, nullable=False),
)

#: Leadership of the bridges sharing this database (one row per lease name, ``bridge``): the
#: leader renews it (``version`` + 1) every lease / 3; a standby that sees neither ``token``
#: nor ``version`` change for a whole lease takes it over with ``token`` + 1 (compare-and-set).
#: ``token`` is the fencing token: every leader-only write checks it in its own transaction
#: (:mod:`bot.leadership.lease`). ``holder`` is ``NULL`` after a graceful release.
leader_lease = Table(
    "leader_lease",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("token", BigInteger, nullable=False),
    Column("holder", String(200), nullable=True),
    Column("version", BigInteger, nullable=False),
    Column("renewed_at", Float, nullable=False),  # Unix seconds of the last renewal (for people)
    Column("lease_seconds", Float, nullable=False),  # the holder's BRIDGE_LEADER_LEASE_SECONDS
)
