"""The Store adapter: every open task, message, decision in flight and step taken is a row.

All methods are coroutines on an SQLAlchemy ``AsyncEngine`` (SQLite through aiosqlite by
default, PostgreSQL through asyncpg). Compare-and-set updates (``UPDATE … WHERE``) make the
exactly-once guarantees hold even when two clicks race.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from escalation.models import Task

from . import tables as t

__all__ = ["AuditRecord", "EventRecord", "StepRecord", "Store", "TrackedTask", "to_ts"]


def to_ts(value: datetime | None) -> float | None:
    """Aware datetime → Unix seconds (``None`` stays ``None``)."""
    return None if value is None else value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    """Unix seconds → aware UTC datetime (``None`` stays ``None``)."""
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


@dataclass(frozen=True)
class EventRecord:
    """A stored event: its id, type, where it came from and its raw ``WsEvent`` JSON."""

    event_id: str
    type: str
    source: str
    received_at: float
    body: dict[str, Any]


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

    @property
    def task_id(self) -> str:
        """The factory's task id."""
        return self.task.id

    @property
    def is_decided(self) -> bool:
        """True once a decision is confirmed (by the factory, or seen in an event)."""
        return self.decision is not None

    @property
    def has_message(self) -> bool:
        """True when a Discord message shows this task."""
        return self.message_id is not None


@dataclass(frozen=True)
class StepRecord:
    """An escalation step taken for a task (unique per task and step)."""

    task_id: str
    step: str
    due_at: datetime
    taken_at: datetime
    late_seconds: float
    outcome: dict[str, Any]


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


def _row_to_tracked(row: Any) -> TrackedTask:
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
    )


class Store:
    """Async persistence for the bridge.

    Parameters
    ----------
    url:
        An SQLAlchemy *async* URL (``sqlite+aiosqlite:///path.db``,
        ``postgresql+asyncpg://…``); :attr:`bot.settings.Settings.async_database_url` gives one.
    clock:
        Returns the current Unix time in seconds; injected by tests.
    """

    def __init__(self, url: str, *, clock: Any = time.time) -> None:
        self._url = url
        self._clock = clock
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        self.engine: AsyncEngine = create_async_engine(url)

    async def create_schema(self) -> None:
        """Create missing tables (idempotent). SQLite runs in WAL mode for concurrent reads."""
        async with self.engine.begin() as conn:
            if self.engine.dialect.name == "sqlite":
                await conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            await conn.run_sync(t.metadata.create_all)

    async def close(self) -> None:
        """Dispose of the connection pool."""
        await self.engine.dispose()

    async def ping(self) -> bool:
        """True when the database answers a trivial query (used by ``/healthz``)."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
            return True
        except Exception:
            return False

    # ------------------------------------------------------------------ events
    async def record_event(
        self, event_id: str, type_: str, body: dict[str, Any], source: str
    ) -> bool:
        """Store an event durably. Returns ``False`` (and stores nothing) for a duplicate id."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(t.events).values(
                        event_id=event_id,
                        type=type_,
                        source=source,
                        received_at=self._clock(),
                        body=json.dumps(body),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def unprocessed_events(self, limit: int = 100) -> list[EventRecord]:
        """Events stored but not yet handled, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.events)
                .where(t.events.c.processed_at.is_(None))
                .order_by(t.events.c.received_at, t.events.c.event_id)
                .limit(limit)
            )
            return [
                EventRecord(
                    event_id=r.event_id,
                    type=r.type,
                    source=r.source,
                    received_at=r.received_at,
                    body=json.loads(r.body),
                )
                for r in rows
            ]

    async def mark_event_processed(self, event_id: str, error: str | None = None) -> None:
        """Mark an event handled; ``error`` keeps why handling failed (it is not retried)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.events)
                .where(t.events.c.event_id == event_id)
                .values(processed_at=self._clock(), error=error)
            )

    async def count_events(self) -> int:
        """How many events are stored (tests and benchmarks)."""
        async with self.engine.connect() as conn:
            return int(
                (await conn.execute(select(func.count()).select_from(t.events))).scalar_one()
            )

    # ------------------------------------------------------------------ tasks
    async def upsert_task(self, task: Task, deadline: datetime) -> TrackedTask:
        """Insert or refresh a task's snapshot; a confirmed decision is never undone.

        A completed task (status ``completed`` with a decision) also fills the decision columns
        when they are still empty, so decisions made elsewhere are shown.
        """
        now = self._clock()
        values: dict[str, Any] = {
            "payload": task.model_dump_json(by_alias=True),
            "priority": task.priority.value,
            "status": task.status.value,
            "created_at": task.created_at.timestamp(),
            "deadline": deadline.timestamp(),
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            existing = (
                await conn.execute(select(t.tasks).where(t.tasks.c.task_id == task.id))
            ).first()
            if existing is None:
                await conn.execute(insert(t.tasks).values(task_id=task.id, **values))
            else:
                if existing._mapping["decision"] is not None:
                    # keep the decided snapshot's status; refresh the payload only
                    values.pop("status")
                await conn.execute(
                    update(t.tasks).where(t.tasks.c.task_id == task.id).values(**values)
                )
            if task.decision is not None:
                data = task.decision_data
                discord_id = str(data.get("discordUserId") or "")
                await conn.execute(
                    update(t.tasks)
                    .where(and_(t.tasks.c.task_id == task.id, t.tasks.c.decision.is_(None)))
                    .values(
                        decision=task.decision.value,
                        decision_notes=task.decision_notes,
                        decided_by=str(data.get("discordUsername") or task.decided_by or ""),
                        decided_by_discord_id=int(discord_id) if discord_id.isdigit() else None,
                        decided_at=to_ts(task.decided_at) or now,
                        decision_source=str(data.get("source") or "factory"),
                        status="completed",
                    )
                )
            row = (await conn.execute(select(t.tasks).where(t.tasks.c.task_id == task.id))).one()
        return _row_to_tracked(row)

    async def get_task(self, task_id: str) -> TrackedTask | None:
        """The tracked task, or ``None`` when the bridge has never seen it."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.tasks).where(t.tasks.c.task_id == task_id))).first()
        return None if row is None else _row_to_tracked(row)

    async def open_tasks(self) -> list[TrackedTask]:
        """Tasks with no confirmed decision, oldest first."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.tasks).where(t.tasks.c.decision.is_(None)).order_by(t.tasks.c.created_at)
            )
            return [_row_to_tracked(r) for r in rows]

    async def tasks_by_ids(self, task_ids: Sequence[str]) -> list[TrackedTask]:
        """Tracked tasks for these ids, in the order given (unknown ids are left out)."""
        if not task_ids:
            return []
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.tasks).where(t.tasks.c.task_id.in_(list(task_ids))))
            found = {r.task_id: _row_to_tracked(r) for r in rows}
        return [found[i] for i in task_ids if i in found]

    async def claim_posting(self, task_id: str, *, stale_after_seconds: float = 60.0) -> bool:
        """Compare-and-set: claim the right to post this task's message.

        Returns ``True`` for exactly one caller while the task has no message; a claim older
        than ``stale_after_seconds`` (a crash between claim and post) can be taken again.
        """
        now = self._clock()
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.tasks)
                .where(
                    and_(
                        t.tasks.c.task_id == task_id,
                        t.tasks.c.message_id.is_(None),
                        or_(
                            t.tasks.c.posting_claimed_at.is_(None),
                            t.tasks.c.posting_claimed_at < now - stale_after_seconds,
                        ),
                    )
                )
                .values(posting_claimed_at=now)
            )
            return result.rowcount == 1

    async def release_posting(self, task_id: str) -> None:
        """Give up a posting claim (the post failed) so that a later attempt can post."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.message_id.is_(None)))
                .values(posting_claimed_at=None)
            )

    async def set_message(
        self, task_id: str, channel_id: int, message_id: int, batch_id: str | None = None
    ) -> None:
        """Record the Discord message that shows the task."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(channel_id=channel_id, message_id=message_id, batch_id=batch_id)
            )

    async def adopt_message(self, task_id: str, channel_id: int, message_id: int) -> bool:
        """Record a message found to show the task when the store has none (self-healing).

        A crash between posting and :meth:`set_message` leaves a message the store does not
        know; a click on it (or the channel history) tells us. Returns ``True`` when adopted.
        """
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.message_id.is_(None)))
                .values(channel_id=channel_id, message_id=message_id)
            )
            return result.rowcount == 1

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
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(t.tasks)
                .where(
                    and_(
                        t.tasks.c.task_id == task_id,
                        t.tasks.c.decision.is_(None),
                        t.tasks.c.inflight_decision.is_(None),
                    )
                )
                .values(
                    inflight_decision=decision,
                    inflight_by_discord_id=discord_user_id,
                    inflight_by_name=name,
                    inflight_key=key,
                    inflight_notes=notes,
                    inflight_at=self._clock(),
                )
            )
            if result.rowcount != 1:
                return None
            row = (await conn.execute(select(t.tasks).where(t.tasks.c.task_id == task_id))).one()
        return _row_to_tracked(row)

    async def abort_decision(self, task_id: str, key: str) -> None:
        """Clear an in-flight decision that the factory did not confirm (buttons stay live)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.inflight_key == key))
                .values(
                    inflight_decision=None,
                    inflight_by_discord_id=None,
                    inflight_by_name=None,
                    inflight_key=None,
                    inflight_notes=None,
                    inflight_at=None,
                )
            )

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
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task.id, t.tasks.c.decision.is_(None)))
                .values(
                    payload=task.model_dump_json(by_alias=True),
                    status="completed",
                    decision=decision,
                    decision_notes=notes,
                    decided_by=decided_by,
                    decided_by_discord_id=discord_user_id,
                    decided_at=at.timestamp(),
                    decision_source=source,
                    updated_at=self._clock(),
                )
            )
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task.id)
                .values(
                    inflight_decision=None,
                    inflight_by_discord_id=None,
                    inflight_by_name=None,
                    inflight_key=None,
                    inflight_notes=None,
                    inflight_at=None,
                )
            )
            row = (await conn.execute(select(t.tasks).where(t.tasks.c.task_id == task.id))).one()
        return _row_to_tracked(row)

    async def inflight_decisions(self) -> list[TrackedTask]:
        """Tasks with a decision in flight (a crash may have left them; they are re-sent)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(t.tasks).where(
                    and_(t.tasks.c.inflight_decision.is_not(None), t.tasks.c.decision.is_(None))
                )
            )
            return [_row_to_tracked(r) for r in rows]

    async def set_acknowledged(
        self, task_id: str, discord_user_id: int, name: str, at: datetime
    ) -> None:
        """Record who acknowledged the task (the first acknowledgement is kept)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.acknowledged_at.is_(None)))
                .values(
                    acknowledged_by_discord_id=discord_user_id,
                    acknowledged_by_name=name,
                    acknowledged_at=at.timestamp(),
                )
            )

    async def set_snoozed(self, task_id: str, until: datetime, name: str) -> None:
        """Record a snooze until ``until`` (aware UTC)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(snoozed_until=until.timestamp(), snoozed_by_name=name)
            )

    # ------------------------------------------------------------------ escalation steps
    async def record_step(
        self,
        task_id: str,
        step: str,
        *,
        due_at: datetime,
        taken_at: datetime,
        outcome: dict[str, Any],
    ) -> bool:
        """Record a step as taken. Returns ``False`` when it was already taken (unique key)."""
        try:
            async with self.engine.begin() as conn:
                await conn.execute(
                    insert(t.escalation_steps).values(
                        task_id=task_id,
                        step=step,
                        due_at=due_at.timestamp(),
                        taken_at=taken_at.timestamp(),
                        late_seconds=max(0.0, (taken_at - due_at).total_seconds()),
                        outcome=json.dumps(outcome),
                    )
                )
        except IntegrityError:
            return False
        return True

    async def steps_for(self, task_ids: Sequence[str] | None = None) -> list[StepRecord]:
        """Steps taken, for the given tasks (all when ``None``), in the order taken."""
        query = select(t.escalation_steps).order_by(t.escalation_steps.c.id)
        if task_ids is not None:
            query = query.where(t.escalation_steps.c.task_id.in_(list(task_ids)))
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
            return [
                StepRecord(
                    task_id=r.task_id,
                    step=r.step,
                    due_at=from_ts(r.due_at),  # type: ignore[arg-type]
                    taken_at=from_ts(r.taken_at),  # type: ignore[arg-type]
                    late_seconds=r.late_seconds,
                    outcome=json.loads(r.outcome),
                )
                for r in rows
            ]

    # ------------------------------------------------------------------ audit
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
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(t.audit).values(
                    at=self._clock(),
                    actor_id=actor_id,
                    actor_name=actor_name,
                    via=via,
                    action=action,
                    task_id=task_id,
                    batch_id=batch_id,
                    request=None if request is None else json.dumps(request),
                    outcome=outcome,
                    detail=detail,
                )
            )

    async def audit_entries(
        self, *, task_id: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        """Audit entries, oldest first, filtered by task and/or time (aware UTC)."""
        query = select(t.audit).order_by(t.audit.c.id).limit(limit)
        if task_id is not None:
            query = query.where(t.audit.c.task_id == task_id)
        if since is not None:
            query = query.where(t.audit.c.at >= since.timestamp())
        async with self.engine.connect() as conn:
            rows = await conn.execute(query)
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
