"""The Store adapter: every open task, message, decision in flight and step taken is a row.

All methods are coroutines over SQLAlchemy Core on a :class:`~bot.store.database.Database`:
each one builds plain values on the event loop, then hands a synchronous unit of work to the
database — writes run on its one writer thread (group commit: many units, one transaction, one
disk sync), reads on its reader threads. Compare-and-set updates (``UPDATE … WHERE``) make the
exactly-once guarantees hold even when two clicks race.
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from bot.store.fingerprint import event_fingerprint
from escalation.deploy_guard import (
    DeployApproval,
    GuardSignal,
    approvals_required,
    guard_signals,
)
from escalation.models import Approval, Task

from . import tables as t
from .database import Database, driver_cursor

__all__ = [
    "AuditRecord",
    "BatchRecord",
    "EventRecord",
    "Recorded",
    "Store",
    "TrackedTask",
    "from_ts",
    "to_ts",
]

# Hot-path SQL run through the driver (see bot.store.database.driver_cursor); the names are
# those of bot.store.tables (the intake and processor tests run these against that schema).
_INSERT_EVENT = (
    "INSERT INTO events (event_id, type, source, received_at, body) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (event_id) DO NOTHING"
)
_UNPROCESSED_EVENTS = (
    "SELECT event_id, type, source, received_at, body FROM events "
    "WHERE processed_at IS NULL ORDER BY received_at, event_id LIMIT ?"
)
_MARK_EVENT_PROCESSED = "UPDATE events SET processed_at = ?, error = NULL WHERE event_id = ?"
_MARK_EVENT_WITH_ERROR = "UPDATE events SET processed_at = ?, error = ? WHERE event_id = ?"
_INSERT_FINGERPRINT = (
    "INSERT INTO event_fingerprints (fingerprint, type, handled_at) VALUES (?, ?, ?) "
    "ON CONFLICT (fingerprint) DO NOTHING"
)
#: ``events.error`` of an event stored but not acted on: its content was accepted before.
_SAME_CONTENT = "same content as an event accepted before (acted on once)"

T = TypeVar("T")

# Statements of the click path built once: SQLAlchemy then reuses their cache key and compiled
# form instead of rebuilding them per call (on the writer thread, that work holds the GIL the
# event loop needs to answer interactions).
#: A task row with what the bridge knows of its approval (outer join: most tasks have none).
_TRACKED = select(
    t.tasks,
    t.task_approvals.c.approval.label("gate_approval"),
    t.task_approvals.c.approval_unread.label("gate_unread"),
    t.task_approvals.c.approvers.label("gate_approvers"),
).select_from(t.tasks.outerjoin(t.task_approvals, t.task_approvals.c.task_id == t.tasks.c.task_id))
_TASK_ROW = _TRACKED.where(t.tasks.c.task_id == bindparam("b_task_id"))
_BEGIN_DECISION = (
    update(t.tasks)
    .where(
        and_(
            t.tasks.c.task_id == bindparam("b_task_id"),
            t.tasks.c.decision.is_(None),
            t.tasks.c.inflight_decision.is_(None),
        )
    )
    .values(
        {
            column: bindparam(column)
            for column in (
                "inflight_decision",
                "inflight_by_discord_id",
                "inflight_by_name",
                "inflight_key",
                "inflight_notes",
                "inflight_at",
            )
        }
    )
)

#: Task rows :meth:`Store.get_task` keeps in memory (least recently read forgotten first).
TASK_CACHE_SIZE = 1024

#: ``runtime_state`` key of the heartbeat :meth:`Store.check_write` writes.
HEALTH_KEY = "healthz"


def to_ts(value: datetime | None) -> float | None:
    """Aware datetime → Unix seconds (``None`` stays ``None``)."""
    return None if value is None else value.timestamp()


def from_ts(value: float | None) -> datetime | None:
    """Unix seconds → aware UTC datetime (``None`` stays ``None``)."""
    return None if value is None else datetime.fromtimestamp(value, tz=UTC)


class Recorded(enum.Enum):
    """What :meth:`Store.record_event` did with an event."""

    #: Stored, to be acted on.
    NEW = "new"
    #: Stored already marked processed: the same content was accepted before under another id
    #: (a webhook and WebSocket double delivery), so it is acted on once.
    SAME_CONTENT = "same content"
    #: Its id was stored before; nothing was stored.
    DUPLICATE = "duplicate"


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
    def is_decided(self) -> bool:
        """True once a decision is confirmed (by the factory, or seen in an event)."""
        return self.decision is not None

    @property
    def has_message(self) -> bool:
        """True when a Discord message shows this task."""
        return self.message_id is not None


@dataclass(frozen=True)
class BatchRecord:
    """A batch message (smart batching): the routine tasks it shows, in display order.

    ``channel_id``/``message_id``/``posted_at`` are ``None`` until the message exists; times
    are Unix seconds.
    """

    batch_id: str
    key: str
    task_ids: tuple[str, ...]
    channel_id: int | None
    message_id: int | None
    created_at: float
    posted_at: float | None


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
        inflight_notes=m["inflight_notes"],
        inflight_at=from_ts(m["inflight_at"]),
        approval=_approval_of(m.get("gate_approval")),
        approval_unread=bool(m.get("gate_unread")),
        deploy_approvals=_approvers_of(m.get("gate_approvers")),
    )


def _approval_of(text: str | None) -> Approval | None:
    return None if not text else Approval.model_validate_json(text)


def _approvers_of(text: str | None) -> tuple[DeployApproval, ...]:
    if not text:
        return ()
    return tuple(DeployApproval.from_wire(entry) for entry in json.loads(text))


class Store:
    """Async persistence for the bridge.

    Parameters
    ----------
    url:
        An SQLAlchemy URL (``sqlite:///path.db``, ``postgresql://…``); the async driver names
        (``sqlite+aiosqlite``, ``postgresql+asyncpg``) are accepted and mapped to synchronous
        drivers by :func:`bot.store.database.sync_url`. The directory of an SQLite file is
        created when missing.
    clock:
        Returns the current Unix time in seconds; injected by tests. It is always called on
        the event loop, never inside a unit of work.

    Every method runs its statements as one unit of work on :attr:`db` (one transaction).
    :meth:`get_task` answers recently read rows from memory, which assumes that this store
    is the only writer of the tasks table (one bridge process per database); the
    exactly-once rules do not depend on it, they are compare-and-set updates in the database.
    """

    def __init__(self, url: str, *, clock: Any = time.time) -> None:
        self._clock = clock
        self.db = Database(url)
        # the event table's hot writes, drained together by one writer coroutine
        self._pending_events: list[tuple[dict[str, Any], asyncio.Future[Recorded]]] = []
        self._pending_marks: list[tuple[list[tuple[float, str]], asyncio.Future[None]]] = []
        self._event_writer: asyncio.Task[None] | None = None
        # recently read task rows (see get_task); valid until a write to that row settles
        self._task_cache: OrderedDict[str, TrackedTask] = OrderedDict()
        self._task_writes = 0  # task writes settled so far

    async def create_schema(self) -> None:
        """Create missing tables (idempotent).

        SQLite files run in WAL mode (set by :class:`~bot.store.database.Database` on
        connect), so reads go on while a write is in progress.
        """
        await self.db.write(lambda conn: t.metadata.create_all(conn))

    async def close(self) -> None:
        """Finish queued writes and close every connection (see :meth:`Database.close`)."""
        await self.db.close()

    async def ping(self) -> bool:
        """True when the database answers a trivial query (used by ``/healthz``)."""

        def work(conn: Connection) -> None:
            conn.execute(select(1)).all()

        try:
            await self.db.read(work)
            return True
        except Exception:
            return False

    async def check_write(self, *, timeout_seconds: float = 5.0) -> str | None:
        """Write a heartbeat through the writer thread (used by ``/healthz``).

        A database that answers reads can still refuse every write (disk full, a read-only
        file or mount): this commits one tiny row (``runtime_state`` key ``healthz``) the way
        every other write goes.

        Returns
        -------
        str or None
            ``None`` when the write committed within ``timeout_seconds``; otherwise why not,
            in a few words (the driver's message, e.g. ``database or disk is full``).
        """
        try:
            await asyncio.wait_for(
                self.save_state(HEALTH_KEY, {"at": self._clock()}), timeout_seconds
            )
        except TimeoutError:
            return f"no write committed within {timeout_seconds:g}s"
        except Exception as exc:
            inner = getattr(exc, "orig", None) or exc
            lines = str(inner).strip().splitlines()
            return (lines[0] if lines else type(inner).__name__)[:200]
        return None

    # ------------------------------------------------------------------ events
    async def record_event(
        self, event_id: str, type_: str, body: dict[str, Any], source: str
    ) -> Recorded:
        """Store an event durably and say what was done (see :class:`Recorded`).

        A duplicate id stores nothing. The event's content fingerprint
        (:func:`bot.store.fingerprint.event_fingerprint`) is remembered with it: an event
        whose content was accepted before under another id (the same ``WsEvent`` delivered by
        webhook *and* WebSocket) is stored already marked processed ("same content as an
        accepted event"), so it is acted on once.

        Returns only after the transaction holding the event committed. Concurrent calls share
        one transaction (group commit), so a burst of webhooks costs one disk sync per batch
        instead of one per event.
        """
        values = {
            "event_id": event_id,
            "type": type_,
            "source": source,
            "received_at": self._clock(),
            "body": json.dumps(body),
            "fingerprint": event_fingerprint(body),
        }
        future: asyncio.Future[Recorded] = asyncio.get_running_loop().create_future()
        self._pending_events.append((values, future))
        self._start_event_writer()
        return await future

    def _start_event_writer(self) -> None:
        if self._event_writer is None or self._event_writer.done():
            self._event_writer = asyncio.create_task(self._write_events())

    async def _write_events(self) -> None:
        """Drain the pending events and marks, one write unit per batch (group commit).

        New events and the processor's marks share a unit: under a burst the intake and the
        processor cost one transaction together, not one each.
        """
        while self._pending_events or self._pending_marks:
            batch, self._pending_events = self._pending_events, []
            marks, self._pending_marks = self._pending_marks, []
            try:
                outcome = await self._write_event_batch(
                    [values for values, _ in batch], [m for run, _ in marks for m in run]
                )
            except Exception as exc:  # every caller gets the error; nothing half-stored
                for future in [f for _, f in batch] + [f for _, f in marks]:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, event_future), recorded in zip(batch, outcome, strict=True):
                if not event_future.done():
                    event_future.set_result(recorded)
            for _, mark_future in marks:
                if not mark_future.done():
                    mark_future.set_result(None)

    async def _write_event_batch(
        self, rows: list[dict[str, Any]], marks: list[tuple[float, str]]
    ) -> list[Recorded]:
        """Insert the rows whose ids are not stored yet; per row, what was done.

        A row repeating an id stored earlier, or earlier in ``rows``, is left out
        (:attr:`Recorded.DUPLICATE`). A new row whose content fingerprint is known is stored
        as processed (:attr:`Recorded.SAME_CONTENT`, see :meth:`record_event`). ``marks``
        (``(processed_at, event_id)``) are applied first. One unit of work, two statements per
        new event; the driver is called directly (hot path, see
        :func:`~bot.store.database.driver_cursor`).
        """

        def work(conn: Connection) -> list[Recorded]:
            cursor, sql = driver_cursor(conn)
            if marks:
                cursor.executemany(sql(_MARK_EVENT_PROCESSED), marks)
            outcome = []
            for v in rows:
                cursor.execute(
                    sql(_INSERT_EVENT),
                    (v["event_id"], v["type"], v["source"], v["received_at"], v["body"]),
                )
                if cursor.rowcount != 1:
                    outcome.append(Recorded.DUPLICATE)
                    continue
                cursor.execute(
                    sql(_INSERT_FINGERPRINT), (v["fingerprint"], v["type"], v["received_at"])
                )
                if cursor.rowcount == 1:
                    outcome.append(Recorded.NEW)
                    continue
                cursor.execute(
                    sql(_MARK_EVENT_WITH_ERROR), (v["received_at"], _SAME_CONTENT, v["event_id"])
                )
                outcome.append(Recorded.SAME_CONTENT)
            return outcome

        return await self.db.write(work)

    async def unprocessed_events(self, limit: int = 100) -> list[EventRecord]:
        """Events stored but not yet handled, oldest first."""

        def work(conn: Connection) -> list[EventRecord]:
            cursor, sql = driver_cursor(conn)
            cursor.execute(sql(_UNPROCESSED_EVENTS), (limit,))
            return [
                EventRecord(
                    event_id=event_id,
                    type=type_,
                    source=source,
                    received_at=received_at,
                    body=json.loads(body),
                )
                for event_id, type_, source, received_at, body in cursor.fetchall()
            ]

        return await self.db.read(work)

    async def mark_event_processed(self, event_id: str, error: str | None = None) -> None:
        """Mark an event handled; ``error`` keeps why handling failed (it is not retried)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.events)
                .where(t.events.c.event_id == event_id)
                .values(processed_at=now, error=error)
            )

        await self.db.write(work)

    async def mark_events_processed(self, event_ids: Sequence[str]) -> None:
        """Mark many events handled without error, in one write.

        Lets the event processor mark a run of handled events with one unit of work instead
        of one per event; the unit is shared with the events stored meanwhile. Returns once
        committed. ``event_ids`` may be empty (nothing is written); unknown ids are ignored.
        """
        now = self._clock()
        marks = [(now, event_id) for event_id in event_ids]
        if not marks:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_marks.append((marks, future))
        self._start_event_writer()
        await future

    async def count_events(self) -> int:
        """How many events are stored (tests and benchmarks)."""

        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(t.events)).scalar_one())

        return await self.db.read(work)

    # ------------------------------------------------------------------ tasks
    async def upsert_task(self, task: Task, deadline: datetime) -> TrackedTask:
        """Insert or refresh a task's snapshot; a confirmed decision is never undone.

        A completed task (status ``completed`` with a decision) also fills the decision columns
        when they are still empty, so decisions made elsewhere are shown. Two first sightings
        of a task at once (an event and reconciliation) are safe: in one process the writer
        thread runs them one after the other; against another process, the loser of the
        insert race (``IntegrityError``) refreshes the row the winner inserted.
        """
        try:
            return await self._upsert_task_once(task, deadline)
        except IntegrityError:
            return await self._upsert_task_once(task, deadline)

    async def _upsert_task_once(self, task: Task, deadline: datetime) -> TrackedTask:
        now = self._clock()
        values: dict[str, Any] = {
            "payload": task.model_dump_json(by_alias=True),
            "priority": task.priority.value,
            "status": task.status.value,
            "created_at": task.created_at.timestamp(),
            "deadline": deadline.timestamp(),
            "updated_at": now,
        }
        decided: dict[str, Any] | None = None
        if task.decision is not None:
            data = task.decision_data
            discord_id = str(data.get("discordUserId") or "")
            decided = {
                "decision": task.decision.value,
                "decision_notes": task.decision_notes,
                "decided_by": str(data.get("discordUsername") or task.decided_by or ""),
                "decided_by_discord_id": int(discord_id) if discord_id.isdigit() else None,
                "decided_at": to_ts(task.decided_at) or now,
                "decision_source": str(data.get("source") or "factory"),
                "status": "completed",
            }
        task_id = task.id

        def work(conn: Connection) -> TrackedTask:
            existing = conn.execute(_TASK_ROW, {"b_task_id": task_id}).first()
            if existing is None:
                conn.execute(insert(t.tasks).values(task_id=task_id, **values))
            else:
                refresh = dict(values)
                if existing._mapping["decision"] is not None:
                    # keep the decided snapshot's status; refresh the payload only
                    refresh.pop("status")
                conn.execute(update(t.tasks).where(t.tasks.c.task_id == task_id).values(**refresh))
            if decided is not None:
                conn.execute(
                    update(t.tasks)
                    .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.decision.is_(None)))
                    .values(**decided)
                )
            row = conn.execute(_TASK_ROW, {"b_task_id": task_id}).one()
            return _row_to_tracked(row)

        return await self._write_task(task_id, work)

    async def get_task(self, task_id: str) -> TrackedTask | None:
        """The tracked task, or ``None`` when the bridge has never seen it.

        Answered from memory when the row was read recently and not written since (see
        :meth:`_write_task`), so that an interaction is answered without waiting for a
        database thread (Discord: 3 s interaction deadline; bench ``click``).
        """
        cached = self._task_cache.get(task_id)
        if cached is not None:
            self._task_cache.move_to_end(task_id)
            return cached
        writes_before = self._task_writes

        def work(conn: Connection) -> TrackedTask | None:
            row = conn.execute(_TASK_ROW, {"b_task_id": task_id}).first()
            return None if row is None else _row_to_tracked(row)

        tracked = await self.db.read(work)
        # a task write that settled while this read ran may have changed the row after the
        # read saw it: keep only what no write can have overtaken
        if tracked is not None and writes_before == self._task_writes:
            self._task_cache[task_id] = tracked
            if len(self._task_cache) > TASK_CACHE_SIZE:
                self._task_cache.popitem(last=False)
        return tracked

    async def _write_task(self, task_id: str, work: Callable[[Connection], T]) -> T:
        """:meth:`Database.write` for a unit that changes the row of ``task_id``.

        Every write to the tasks table goes through here: when the unit settles (committed
        or failed, even if the caller was cancelled) the cached row is forgotten and the
        write counter moves, so :meth:`get_task` never answers with a row older than a
        write that has settled.
        """

        def forget() -> None:
            self._task_writes += 1
            self._task_cache.pop(task_id, None)

        return await self.db.write(work, on_settled=forget)

    async def open_tasks(self) -> list[TrackedTask]:
        """Tasks with no confirmed decision, oldest first."""

        def work(conn: Connection) -> list[TrackedTask]:
            rows = conn.execute(
                _TRACKED.where(t.tasks.c.decision.is_(None)).order_by(t.tasks.c.created_at)
            )
            return [_row_to_tracked(r) for r in rows]

        return await self.db.read(work)

    async def tasks_by_ids(self, task_ids: Sequence[str]) -> list[TrackedTask]:
        """Tracked tasks for these ids, in the order given (unknown ids are left out)."""
        if not task_ids:
            return []
        ids = list(task_ids)

        def work(conn: Connection) -> dict[str, TrackedTask]:
            rows = conn.execute(_TRACKED.where(t.tasks.c.task_id.in_(ids)))
            return {r.task_id: _row_to_tracked(r) for r in rows}

        found = await self.db.read(work)
        return [found[i] for i in ids if i in found]

    async def claim_posting(self, task_id: str, *, stale_after_seconds: float = 60.0) -> bool:
        """Compare-and-set: claim the right to post this task's message.

        Returns ``True`` for exactly one caller while the task has no message; a claim older
        than ``stale_after_seconds`` (a crash between claim and post) can be taken again.
        """
        now = self._clock()

        def work(conn: Connection) -> bool:
            result = conn.execute(
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

        return await self._write_task(task_id, work)

    async def release_posting(self, task_id: str) -> None:
        """Give up a posting claim (the post failed) so that a later attempt can post."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.message_id.is_(None)))
                .values(posting_claimed_at=None)
            )

        await self._write_task(task_id, work)

    async def set_message(
        self, task_id: str, channel_id: int, message_id: int, batch_id: str | None = None
    ) -> None:
        """Record the Discord message that shows the task."""

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(channel_id=channel_id, message_id=message_id, batch_id=batch_id)
            )

        await self._write_task(task_id, work)

    async def adopt_message(
        self, task_id: str, channel_id: int, message_id: int, batch_id: str | None = None
    ) -> bool:
        """Record a message found to show the task when the store has none (self-healing).

        A crash between posting and :meth:`set_message` leaves a message the store does not
        know; a click on it (or the channel history) tells us. ``batch_id`` is given for a
        batch message. Returns ``True`` when adopted.
        """
        values: dict[str, Any] = {"channel_id": channel_id, "message_id": message_id}
        if batch_id is not None:
            values["batch_id"] = batch_id

        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.message_id.is_(None)))
                .values(**values)
            )
            return result.rowcount == 1

        return await self._write_task(task_id, work)

    async def count_tasks(self) -> int:
        """How many tasks the store knows (0 on a fresh or lost database)."""

        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.count()).select_from(t.tasks)).scalar_one())

        return await self.db.read(work)

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
            row = conn.execute(_TASK_ROW, {"b_task_id": task_id}).one()
            return _row_to_tracked(row)

        return await self._write_task(task_id, work)

    async def abort_decision(self, task_id: str, key: str) -> None:
        """Clear an in-flight decision that the factory did not confirm (buttons stay live)."""

        def work(conn: Connection) -> None:
            conn.execute(
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
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(
                    inflight_decision=None,
                    inflight_by_discord_id=None,
                    inflight_by_name=None,
                    inflight_key=None,
                    inflight_notes=None,
                    inflight_at=None,
                )
            )
            row = conn.execute(_TASK_ROW, {"b_task_id": task_id}).one()
            return _row_to_tracked(row)

        return await self._write_task(task_id, work)

    async def inflight_decisions(self) -> list[TrackedTask]:
        """Tasks with a decision in flight (a crash may have left them; they are re-sent)."""

        def work(conn: Connection) -> list[TrackedTask]:
            rows = conn.execute(
                _TRACKED.where(
                    and_(t.tasks.c.inflight_decision.is_not(None), t.tasks.c.decision.is_(None))
                )
            )
            return [_row_to_tracked(r) for r in rows]

        return await self.db.read(work)

    # ------------------------------------------------------------------ approvals (deploy guard)
    async def set_approval(
        self, task_id: str, approval: Approval | None, *, unread: bool = False
    ) -> None:
        """Remember the approval behind ``task_id`` (``None`` with ``unread=True``: the bridge
        looked and could not read it, which guards the task; ``None`` alone: it has none).

        Deploy approvals already collected are kept.
        """
        text = approval.model_dump_json(by_alias=True) if approval is not None else None
        now = self._clock()

        def work(conn: Connection) -> None:
            changed = conn.execute(
                update(t.task_approvals)
                .where(t.task_approvals.c.task_id == task_id)
                .values(
                    approval=text,
                    approval_unread=int(unread),
                    version=t.task_approvals.c.version + 1,
                    updated_at=now,
                )
            ).rowcount
            if not changed:
                conn.execute(
                    insert(t.task_approvals).values(
                        task_id=task_id,
                        approval=text,
                        approval_unread=int(unread),
                        approvers="[]",
                        version=0,
                        updated_at=now,
                    )
                )

        try:
            await self._write_task(task_id, work)
        except IntegrityError:  # another process inserted the row first: update it
            await self._write_task(task_id, work)

    async def add_deploy_approval(
        self, task_id: str, approval: DeployApproval
    ) -> tuple[bool, tuple[DeployApproval, ...]]:
        """Add one person's deploy approval of ``task_id`` unless they approved already.

        A compare-and-set on the row's ``version``: two approvals at once from two processes
        both land (the loser re-reads and tries again).

        Returns
        -------
        tuple
            ``(added, approvals)``: ``added`` is ``False`` when this Discord user had approved
            already; ``approvals`` is every approval collected, oldest first.

        Raises
        ------
        RuntimeError
            When 20 compare-and-set attempts in a row lost to concurrent approvals.
        sqlalchemy.exc.SQLAlchemyError
            When the database takes no write (the caller answers that nothing was recorded).
        """
        now = self._clock()

        def work(conn: Connection) -> tuple[bool, tuple[DeployApproval, ...]] | None:
            row = conn.execute(
                select(t.task_approvals.c.approvers, t.task_approvals.c.version).where(
                    t.task_approvals.c.task_id == task_id
                )
            ).first()
            if row is None:
                conn.execute(
                    insert(t.task_approvals).values(
                        task_id=task_id,
                        approval=None,
                        approval_unread=0,
                        approvers=json.dumps([approval.to_wire()]),
                        version=0,
                        updated_at=now,
                    )
                )
                return True, (approval,)
            current = _approvers_of(row.approvers)
            if any(a.discord_user_id == approval.discord_user_id for a in current):
                return False, current
            collected = (*current, approval)
            changed = conn.execute(
                update(t.task_approvals)
                .where(
                    and_(
                        t.task_approvals.c.task_id == task_id,
                        t.task_approvals.c.version == row.version,
                    )
                )
                .values(
                    approvers=json.dumps([a.to_wire() for a in collected]),
                    version=row.version + 1,
                    updated_at=now,
                )
            ).rowcount
            return (True, collected) if changed else None

        for _ in range(20):
            try:
                result = await self._write_task(task_id, work)
            except IntegrityError:
                continue
            if result is not None:
                return result
        raise RuntimeError(f"could not record the deploy approval of task {task_id}")

    async def set_acknowledged(
        self, task_id: str, discord_user_id: int, name: str, at: datetime
    ) -> None:
        """Record who acknowledged the task (the first acknowledgement is kept)."""
        acknowledged_at = at.timestamp()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(and_(t.tasks.c.task_id == task_id, t.tasks.c.acknowledged_at.is_(None)))
                .values(
                    acknowledged_by_discord_id=discord_user_id,
                    acknowledged_by_name=name,
                    acknowledged_at=acknowledged_at,
                )
            )

        await self._write_task(task_id, work)

    async def set_snoozed(self, task_id: str, until: datetime, name: str) -> None:
        """Record a snooze until ``until`` (aware UTC)."""
        snoozed_until = until.timestamp()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(snoozed_until=snoozed_until, snoozed_by_name=name)
            )

        await self._write_task(task_id, work)

    # ------------------------------------------------------------------ batches (smart batching)
    async def save_batch(self, batch_id: str, key: str, task_ids: Sequence[str]) -> None:
        """Create the batch row, or replace its item list (ids in display order)."""
        items = json.dumps(list(task_ids))
        now = self._clock()

        def work(conn: Connection) -> None:
            result = conn.execute(
                update(t.batches).where(t.batches.c.batch_id == batch_id).values(task_ids=items)
            )
            if result.rowcount == 0:
                conn.execute(
                    insert(t.batches).values(
                        batch_id=batch_id, key=key, task_ids=items, created_at=now
                    )
                )

        await self.db.write(work)

    async def set_batch_message(self, batch_id: str, channel_id: int, message_id: int) -> None:
        """Record the Discord message of a batch (posted now)."""
        now = self._clock()

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.batches)
                .where(t.batches.c.batch_id == batch_id)
                .values(channel_id=channel_id, message_id=message_id, posted_at=now)
            )

        await self.db.write(work)

    async def get_batch(self, batch_id: str) -> BatchRecord | None:
        """The batch row, or ``None``."""

        def work(conn: Connection) -> BatchRecord | None:
            row = conn.execute(select(t.batches).where(t.batches.c.batch_id == batch_id)).first()
            if row is None:
                return None
            m = row._mapping
            return BatchRecord(
                batch_id=m["batch_id"],
                key=m["key"],
                task_ids=tuple(json.loads(m["task_ids"] or "[]")),
                channel_id=m["channel_id"],
                message_id=m["message_id"],
                created_at=m["created_at"],
                posted_at=m["posted_at"],
            )

        return await self.db.read(work)

    # ------------------------------------------------------------------ runtime state
    async def load_state(self, key: str) -> dict[str, Any] | None:
        """The JSON document saved under ``key`` (e.g. ``"batcher"``), or ``None``."""

        def work(conn: Connection) -> str | None:
            return conn.execute(
                select(t.runtime_state.c.value).where(t.runtime_state.c.key == key)
            ).scalar_one_or_none()

        text = await self.db.read(work)
        return None if text is None else dict(json.loads(text))

    async def save_state(self, key: str, value: dict[str, Any]) -> None:
        """Save (insert or replace) a JSON document under ``key``."""
        text = json.dumps(value)
        now = self._clock()

        def work(conn: Connection) -> None:
            result = conn.execute(
                update(t.runtime_state)
                .where(t.runtime_state.c.key == key)
                .values(value=text, updated_at=now)
            )
            if result.rowcount == 0:
                conn.execute(insert(t.runtime_state).values(key=key, value=text, updated_at=now))

        await self.db.write(work)

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
            conn.execute(insert(t.audit).values(**values))

        await self.db.write(work)

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
