"""Persistence of the escalation ladder: steps claimed and finished, deliveries, bad phones.

The store is the truth of the ladder (rule: "Exactly once across restarts"):

* a step is **claimed** (a row under the unique ``(task, step)`` key, status ``claimed``)
  together with every delivery it plans (rows under the unique ``(task, step, channel,
  recipient)`` key, status ``pending``), in one transaction, before any side effect;
* each delivery is claimed (``pending`` → ``claimed``, compare-and-set) right before its side
  effect and finished (``sent``, ``failed``, ``skipped``, ``unreachable``, ``cancelled``)
  right after it;
* the step is finished (``done`` with its outcome) when its own deliveries are done.

What a restart finds and does is :meth:`LadderStore.expire_claimed` (see there).
:class:`LadderStore` is the :class:`escalation.ports.LadderRepository` of the ladder service;
its row types live in the core (:mod:`escalation.ports`, :mod:`escalation.deliveries`).
Timestamps are Unix seconds (floats) in the database and aware UTC datetimes in the API.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from escalation.deliveries import IDEMPOTENT_CHANNELS, NewDelivery
from escalation.ports import DeliveryRow, LadderStepRow

from . import tables as t
from .bundle_claims import CLAIM_PAGE, claim_bundle, put_back_claimed, settle_reserved
from .database import Database, driver_cursor
from .ladder_sql import (
    CHUNK,
    DELIVERY_COLUMNS,
    DELIVERY_DETAILS,
    FINISH_DELIVERIES,
    FINISH_DELIVERY,
    INSERT_AUDIT,
    INSERT_DELIVERY,
    INSERT_STEP,
    STEP_COLUMNS,
    STEPS_OF,
    audit_row_values,
    claim_pending_update,
    delivery_from_row,
    new_delivery_values,
)
from .reminders import PendingReminder, pending_reminders
from .rows import from_ts

__all__ = [
    "IDEMPOTENT_CHANNELS",
    "DeliveryRow",
    "LadderStepRow",
    "LadderStore",
    "NewDelivery",
    "PendingReminder",
]

log = logging.getLogger(__name__)


class _ClaimLost(Exception):
    """A delivery of a step being claimed existed already (unique key): nothing is kept."""


class LadderStore:
    """Ladder rows on the bridge's database (the same database as :class:`bot.store.Store`).

    Parameters
    ----------
    db:
        The :class:`~bot.store.database.Database` of the bridge's :class:`~bot.store.Store`
        (its schema, created by ``Store.create_schema``, has these tables).
    on_audit:
        Called with each audit entry this store wrote (its columns, ``at`` in Unix seconds)
        once its transaction committed: ``Store.audit_written``, so that the metrics count
        the ladder's deliveries like every other audited action.
    """

    def __init__(
        self, db: Database, *, on_audit: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        self.db = db
        self._on_audit = on_audit

    def _audited(self, entries: Iterable[dict[str, Any]], ts: float) -> None:
        if self._on_audit is None:
            return
        for entry in entries:
            try:
                self._on_audit({"at": ts, **entry})
            except Exception:  # an observer must never undo what was written
                log.exception("audit observer failed for %s", entry.get("action"))

    # ------------------------------------------------------------------ steps
    async def claim_step(
        self,
        task_id: str,
        step: str,
        *,
        due_at: datetime,
        now: datetime,
        deliveries: Sequence[NewDelivery],
        audit: dict[str, Any] | None = None,
        done_outcome: dict[str, Any] | None = None,
    ) -> bool:
        """Claim a step and write its planned deliveries, in one transaction.

        Returns ``False`` (and writes nothing) when the step was claimed before: the unique
        ``(task, step)`` key makes each step happen once. ``audit`` (columns of the audit
        table) is appended in the same transaction: one write per step instead of two.
        ``done_outcome`` writes the step ``done`` at once, with that outcome: for a step that
        has no side effect of its own (its deliveries, if any, are the bundler's).
        """
        ts = now.timestamp()
        due_ts = due_at.timestamp()

        step_row = {
            "task_id": task_id,
            "step": step,
            "due_at": due_ts,
            "taken_at": ts,
            "late_seconds": max(0.0, ts - due_ts),
            "outcome": json.dumps(done_outcome) if done_outcome is not None else "{}",
            "status": "done" if done_outcome is not None else "claimed",
        }
        audit_values = None if audit is None else audit_row_values({"at": ts, **audit})

        # hot path (one unit per step, hundreds a second in a storm, bench/ladders.py): the driver is
        # called directly (see bot.store.database.driver_cursor); the step row goes first and
        # a step claimed before writes nothing (ON CONFLICT on the unique (task, step) key)
        step_values = tuple(step_row[c] for c in STEP_COLUMNS)
        delivery_values = [
            tuple(r[c] for c in DELIVERY_COLUMNS)
            for r in (new_delivery_values(task_id, step, d, due_ts, ts) for d in deliveries)
        ]

        def work(conn: Connection) -> bool:
            cursor, sql = driver_cursor(conn)
            cursor.execute(sql(INSERT_STEP), step_values)
            if cursor.rowcount != 1:
                return False
            try:
                if delivery_values:
                    cursor.executemany(sql(INSERT_DELIVERY), delivery_values)
                if audit_values is not None:
                    cursor.execute(sql(INSERT_AUDIT), audit_values)
            except conn.dialect.dbapi.IntegrityError as exc:  # type: ignore[union-attr]
                raise _ClaimLost from exc  # the unit is rolled back to its savepoint
            return True

        try:
            won = await self.db.write(work, fenced=True)
        except (IntegrityError, _ClaimLost):
            return False
        if won and audit is not None:
            self._audited((audit,), ts)
        return won

    async def finish_step(
        self,
        task_id: str,
        step: str,
        outcome: dict[str, Any],
        *,
        late_seconds: float | None = None,
    ) -> None:
        """Mark a claimed step ``done`` with its outcome (JSON); ``late_seconds`` replaces the
        claim-time lateness when given (a step resumed after a restart finished later)."""
        values: dict[str, Any] = {"status": "done", "outcome": json.dumps(outcome)}
        if late_seconds is not None:
            values["late_seconds"] = late_seconds
        c = t.escalation_steps.c

        def work(conn: Connection) -> None:
            conn.execute(
                update(t.escalation_steps)
                .where(and_(c.task_id == task_id, c.step == step))
                .values(**values)
            )

        await self.db.write(work, fenced=True)

    async def steps(self, task_ids: Iterable[str]) -> dict[str, list[LadderStepRow]]:
        """Step rows per task (chunked ``IN`` queries), in the order claimed."""
        ids = list(dict.fromkeys(task_ids))

        def work(conn: Connection) -> dict[str, list[LadderStepRow]]:
            # hot path (every wake-up reads its task's steps): through the driver
            cursor, sql = driver_cursor(conn)
            found: dict[str, list[LadderStepRow]] = {}
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                cursor.execute(sql(STEPS_OF.format(marks=", ".join("?" * len(chunk)))), chunk)
                for task_id, step, due_at, taken_at, late, status, outcome in cursor.fetchall():
                    found.setdefault(task_id, []).append(
                        LadderStepRow(
                            task_id=task_id,
                            step=step,
                            due_at=from_ts(due_at),  # type: ignore[arg-type]
                            taken_at=from_ts(taken_at),  # type: ignore[arg-type]
                            late_seconds=late,
                            status=status,
                            outcome=json.loads(outcome or "{}"),
                        )
                    )
            return found

        if not ids:
            return {}
        return await self.db.read(work)

    # ------------------------------------------------------------------ deliveries
    async def add_delivery(
        self, task_id: str, step: str, delivery: NewDelivery, *, due_at: datetime, now: datetime
    ) -> bool:
        """Add one pending delivery (a fallback); ``False`` when that key exists already."""
        values = new_delivery_values(task_id, step, delivery, due_at.timestamp(), now.timestamp())
        try:
            await self.db.write(lambda conn: conn.execute(insert(t.escalation_deliveries), values))
        except IntegrityError:
            return False
        return True

    async def deliveries(
        self,
        *,
        task_id: str | None = None,
        step: str | None = None,
        statuses: Sequence[str] | None = None,
        channels: Sequence[str] | None = None,
    ) -> list[DeliveryRow]:
        """Deliveries matching every filter given, oldest first."""
        query = select(t.escalation_deliveries).order_by(t.escalation_deliveries.c.id)
        c = t.escalation_deliveries.c
        if task_id is not None:
            query = query.where(c.task_id == task_id)
        if step is not None:
            query = query.where(c.step == step)
        if statuses is not None:
            query = query.where(c.status.in_(list(statuses)))
        if channels is not None:
            query = query.where(c.channel.in_(list(channels)))
        return await self.db.read(lambda conn: [delivery_from_row(r) for r in conn.execute(query)])

    async def pending_reminders(self, channels: Sequence[str]) -> list[PendingReminder]:
        """Pending deliveries on ``channels`` with their task's stopping state: the bundler's
        read (:func:`bot.store.reminders.pending_reminders`)."""
        return await pending_reminders(self.db, channels)

    async def claim_deliveries(self, ids: Sequence[int], now: datetime) -> bool:
        """Compare-and-set ``pending`` → ``claimed`` for all of ``ids`` (all or nothing)."""
        if not ids:
            return True
        ts = now.timestamp()
        wanted = list(ids)

        def work(conn: Connection) -> None:
            claimed = 0
            for start in range(0, len(wanted), CHUNK):
                result = conn.execute(claim_pending_update(wanted[start : start + CHUNK], ts))
                claimed += result.rowcount
            if claimed != len(wanted):
                raise _NotAllPending  # rolls back the ones that were claimed

        try:
            await self.db.write(work, fenced=True)  # just before a DM / SMS / call is sent
        except _NotAllPending:
            return False
        except Exception:
            # a connection lost while the commit was on its way: the server may have stored
            # the claim, and a claimed row is never sent again (a restart marks it unknown);
            # give back what this claim took, so that the step's retry sends it
            await put_back_claimed(self.db, wanted, ts)
            raise
        return True

    async def claim_pending(
        self, ids: Sequence[int], now: datetime, *, page: int = CLAIM_PAGE
    ) -> list[int]:
        """Claim those of ``ids`` still ``pending`` for one bundled message, a page per
        transaction: see :func:`bot.store.bundle_claims.claim_bundle`."""
        return await claim_bundle(self.db, ids, now, page=page)

    async def finish_delivery(
        self,
        delivery_id: int,
        status: str,
        detail: dict[str, Any],
        now: datetime,
        *,
        audit: dict[str, Any] | None = None,
    ) -> None:
        """Record a delivery's outcome (merged into its detail) and ``audit``, in one write."""
        await self.finish_deliveries(
            [(delivery_id, status, detail)], now, () if audit is None else (audit,)
        )

    async def finish_deliveries(
        self,
        outcomes: Sequence[tuple[int, str, dict[str, Any]]],
        now: datetime,
        audits: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Record the outcomes of several deliveries (``(id, status, detail)``, detail merged
        into the stored one) and their ``audits`` (audit-table columns), in one transaction:
        a bundle of N reminders costs one write, not 2N."""
        ids = [delivery_id for delivery_id, _, _ in outcomes]
        ts = now.timestamp()
        audit_values = [audit_row_values({"at": ts, **audit}) for audit in audits]

        # through the driver: the bundler finishes hundreds of reminders in one unit, and the
        # writer's other units (steps being claimed) wait for it (bench/ladders.py)
        def work(conn: Connection) -> None:
            cursor, sql = driver_cursor(conn)
            stored: dict[int, str | None] = {}
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                cursor.execute(
                    sql(DELIVERY_DETAILS.format(marks=", ".join("?" * len(chunk)))), chunk
                )
                stored.update(cursor.fetchall())
            # a row without a stored detail gets the outcome's as it is: the rows of a bundle
            # share it, so they are updated together (one statement per 500, not one per row)
            merged: list[tuple[str, float, str, int]] = []
            shared: dict[tuple[str, str], list[int]] = {}
            for delivery_id, status, detail in outcomes:
                old = stored.get(delivery_id)
                if old:
                    merged.append(
                        (status, ts, json.dumps({**json.loads(old), **detail}), delivery_id)
                    )
                else:
                    shared.setdefault((status, json.dumps(detail)), []).append(delivery_id)
            if merged:
                cursor.executemany(sql(FINISH_DELIVERY), merged)
            for (status, text), group in shared.items():
                for start in range(0, len(group), CHUNK):
                    chunk = group[start : start + CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    cursor.execute(
                        sql(FINISH_DELIVERIES.format(marks=marks)), (status, ts, text, *chunk)
                    )
            if audit_values:
                cursor.executemany(sql(INSERT_AUDIT), audit_values)

        await self.db.write(work)
        self._audited(audits, ts)

    async def cancel_pending(
        self, task_id: str, reason: str, now: datetime, *, steps: Sequence[str] | None = None
    ) -> int:
        """Cancel the task's pending deliveries (all, or of ``steps``); how many were."""
        c = t.escalation_deliveries.c
        query = update(t.escalation_deliveries).where(
            and_(c.task_id == task_id, c.status == "pending")
        )
        if steps is not None:
            query = query.where(c.step.in_(list(steps)))
        query = query.values(
            status="cancelled",
            finished_at=now.timestamp(),
            detail=json.dumps({"cancelled": reason}),
        )
        return await self.db.write(lambda conn: int(conn.execute(query).rowcount or 0))

    async def expire_claimed(self, now: datetime) -> list[DeliveryRow]:
        """At start: settle deliveries a crash left ``claimed`` (side effect maybe done).

        Idempotent ones (:data:`IDEMPOTENT_CHANNELS`, factory calls with an Idempotency-Key)
        go back to ``pending`` and are sent again; every other one (a DM, an SMS, a call, a
        Discord post: no provider deduplicates them) becomes ``unknown`` and is **not** sent
        again — a duplicate page at 3 a.m. is worse than one the incident report marks as
        unconfirmed.

        A bundle's ``reserved`` rows (:meth:`claim_pending`) go back to ``pending`` when no
        row of their bundle (same recipient, channel and ``claimed_at``) is claimed or
        finished: the crash came between two pages of the claim, before the message. When one
        is, its message may have gone out, and they become ``unknown`` with it.

        Returns the rows made ``unknown`` or sent again, as they were.
        """
        c = t.escalation_deliveries.c
        ts = now.timestamp()

        def work(conn: Connection) -> list[DeliveryRow]:
            interrupted = list(
                conn.execute(select(t.escalation_deliveries).where(c.status == "claimed"))
            )
            interrupted += settle_reserved(conn)
            rows = [delivery_from_row(r) for r in interrupted]
            for r in rows:
                retry = r.channel in IDEMPOTENT_CHANNELS
                detail = {**r.detail, "interrupted": "bridge restarted during the side effect"}
                conn.execute(
                    update(t.escalation_deliveries)
                    .where(c.id == r.id)
                    .values(
                        status="pending" if retry else "unknown",
                        finished_at=None if retry else ts,
                        claimed_at=None if retry else r.claimed_at and r.claimed_at.timestamp(),
                        detail=json.dumps(detail),
                    )
                )
            return rows

        return await self.db.write(work, fenced=True)

    async def last_sent(self, channels: Sequence[str]) -> dict[tuple[str, str], datetime]:
        """When each ``(recipient, channel)`` last got a message (bundle windows)."""
        c = t.escalation_deliveries.c
        query = (
            select(c.recipient, c.channel, func.max(c.claimed_at))
            .where(and_(c.channel.in_(list(channels)), c.claimed_at.is_not(None)))
            .group_by(c.recipient, c.channel)
        )

        def work(conn: Connection) -> dict[tuple[str, str], datetime]:
            return {
                (r[0], r[1]): from_ts(r[2])  # type: ignore[misc]
                for r in conn.execute(query)
                if r[2] is not None
            }

        return await self.db.read(work)

    # ------------------------------------------------------------------ phones
    async def mark_unreachable(
        self, phone: str, operator: str | None, code: int | None, now: datetime
    ) -> None:
        """Persist that ``phone`` must not be texted or called (Twilio 21610)."""
        values = {"phone": phone, "operator": operator, "code": code, "at": now.timestamp()}
        try:
            await self.db.write(lambda conn: conn.execute(insert(t.unreachable_phones), values))
        except IntegrityError:
            pass

    async def clear_unreachable(self, phone: str) -> None:
        """Forget that ``phone`` is unreachable (the person replied START, README "Phone")."""
        c = t.unreachable_phones.c
        await self.db.write(
            lambda conn: conn.execute(delete(t.unreachable_phones).where(c.phone == phone))
        )

    async def claimed_step_tasks(self) -> set[str]:
        """Ids of the tasks with a step left ``claimed`` (read once at start: a scan of the
        step rows, no index needed for it)."""
        c = t.escalation_steps.c
        return await self.db.read(
            lambda conn: {
                r[0]
                for r in conn.execute(select(c.task_id).where(c.status == "claimed").distinct())
            }
        )

    async def unreachable(self) -> set[str]:
        """Phones marked unreachable."""
        return await self.db.read(
            lambda conn: {r[0] for r in conn.execute(select(t.unreachable_phones.c.phone))}
        )


class _NotAllPending(Exception):
    """A compare-and-set over several deliveries found one no longer pending."""
