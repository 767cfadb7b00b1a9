"""The escalation ladder as a service: one wake-up of one task, through ports only.

:class:`LadderService` takes the ladder's steps exactly once (issue: escalation ladder,
"Exactly once across restarts"). Timers are only wake-up calls; on a wake-up for a task
(:meth:`LadderService.on_wake`; the caller holds the task's lock):

1. load the task (:class:`~escalation.ports.TaskReader`): decided → cancel whatever is still
   pending, stop;
2. load its steps (:class:`~escalation.ports.LadderRepository`): a step left ``claimed`` by a
   crash is **resumed**; otherwise :func:`escalation.ladder.due_now` says which step is due —
   the first one is taken (one step per wake-up; when more are due, the next wake-up is
   immediate);
3. **claim** the step and write every delivery it plans (:mod:`escalation.deliveries`; one
   transaction, unique keys);
4. for each delivery, re-check the task (a decision stops everything still pending; an
   acknowledge stops reminder steps), claim the delivery, do the side effect through the
   ports (with retries), record its outcome; DMs and SMS are left ``pending`` for the
   bundler (an adapter: they go out grouped per person, :mod:`escalation.bundling`);
5. finish the step, ask for the task message to be re-rendered, return the next wake-up.

Restart semantics
    A delivery found ``claimed`` at start may or may not have happened (kill -9 between the
    side effect and its row). It is **not** repeated: it becomes ``unknown`` and the incident
    report says so — except factory calls (reassign, safe default), which carry an
    Idempotency-Key and are simply sent again (:meth:`LadderService.recover`). A step found
    ``claimed`` is resumed: its deliveries that never started are done now, late.
Retries
    A retryable :class:`~escalation.ports.DeliveryError` (Discord 5xx/429, Twilio 5xx/429,
    network) is retried after each of :data:`RETRY_DELAYS` (``Retry-After`` honoured when
    longer); then the delivery is ``failed``. The sleep is injected (tests never wait).
Fallbacks
    Twilio 21610 → the phone is persisted as unreachable, audited, and the next on-call
    operator gets the page. Without a pager, SMS and calls are recorded as ``skipped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from escalation.deliveries import (
    BUNDLED_CHANNELS,
    NewDelivery,
    next_own,
    plan_deliveries,
    stop_reason,
)
from escalation.ladder import LadderState, StepDue, due_now, next_step
from escalation.notices import PageItem, call_script, human_duration, late_marker
from escalation.policy import EscalationPolicy, StepKind
from escalation.ports import (
    Alarm,
    Announcer,
    Audit,
    Clock,
    Decider,
    DeliveryError,
    DeliveryResult,
    LadderRepository,
    LadderStepRow,
    LadderTask,
    Pager,
    RecipientUnreachable,
    Roster,
    TaskReader,
)
from escalation.recipients import Person, call_order, next_fallback, reminder_targets

__all__ = [
    "ACTOR_NAME",
    "ACTOR_VIA",
    "RETRY_DELAYS",
    "STEP_VALUES",
    "LadderService",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The audit actor of everything the ladder does (name and ``via``).
ACTOR_NAME = "escalation"
ACTOR_VIA = "system"

#: Backoff between attempts of a failing delivery (seconds): 5 attempts in about 7.5 s.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)

#: Stored step names that are ladder steps.
STEP_VALUES = frozenset(k.value for k in StepKind)

#: A failed wake-up is tried again this much later.
RETRY_WAKE = timedelta(seconds=5)


async def with_retries(
    what: str,
    action: Callable[[], Awaitable[T]],
    *,
    delays: Sequence[float],
    sleep: Callable[[float], Awaitable[object]],
) -> T:
    """Run ``action``; retry a retryable :class:`~escalation.ports.DeliveryError` after each
    of ``delays`` seconds (or its ``retry_after`` when longer), then raise it.

    ``what`` names the action in the log. Any other exception is raised at once.
    """
    waits = (*delays, None)
    for attempt, delay in enumerate(waits, start=1):
        try:
            return await action()
        except DeliveryError as exc:
            if not exc.retryable or delay is None:
                raise
            wait = max(delay, exc.retry_after or 0.0)
            log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, attempt, exc, wait)
            await sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


class LadderService:
    """The escalation ladder, driven through ports (see the module docstring).

    Parameters
    ----------
    policy
        The escalation policy (settings ``ESCALATION_*``, ``SLA_*``, quiet hours).
    repository, tasks, roster, announcer, decider, audit, alarm, clock
        The ports (:mod:`escalation.ports`).
    pager
        SMS and calls, or ``None`` without Twilio settings (those deliveries are ``skipped``).
    retry_delays
        Backoff between attempts of a failing delivery, seconds.
    sleep
        Awaited with a delay in seconds between two attempts (``asyncio.sleep``).

    Attributes
    ----------
    history
        The step rows of each task last read (what the task message shows).
    unreachable
        Phones marked unreachable (Twilio 21610).
    new_bundle_keys
        ``(person, channel)`` pairs that got a pending DM or SMS since the bundler last took
        them (the bundler empties it).
    """

    def __init__(
        self,
        *,
        policy: EscalationPolicy,
        repository: LadderRepository,
        tasks: TaskReader,
        roster: Roster,
        announcer: Announcer,
        pager: Pager | None,
        decider: Decider,
        audit: Audit,
        alarm: Alarm,
        clock: Clock,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self.policy = policy
        self.repository = repository
        self.tasks = tasks
        self.roster = roster
        self.announcer = announcer
        self.pager = pager
        self.decider = decider
        self._audit_port = audit
        self.alarm = alarm
        self.clock = clock
        self.retry_delays = tuple(retry_delays)
        self.sleep = sleep
        self.history: dict[str, list[LadderStepRow]] = {}
        self.unreachable: set[str] = set()
        self.new_bundle_keys: set[tuple[str, str]] = set()
        # tasks whose state changed (ack, snooze, decision) while a step was being taken
        self._changed: set[str] = set()

    # ------------------------------------------------------------------ reading
    def person(self, key: str) -> Person | None:
        """The roster person with this key (name)."""
        return next((p for p in self.roster.people() if p.key == key), None)

    def next_due(
        self, task: LadderTask, rows: Sequence[LadderStepRow] | None = None
    ) -> StepDue | None:
        """The task's next step given the steps taken (``rows``; its :attr:`history` by
        default); see :func:`escalation.ladder.next_step`.

        Raises
        ------
        ValueError
            On inconsistent times (e.g. a naive datetime).
        """
        taken = self.history.get(task.task_id, []) if rows is None else rows
        return next_step(
            task.task.created_at,
            task.deadline,
            task.task.priority,
            self.policy,
            _state(task, taken),
        )

    def mark_changed(self, task_id: str) -> None:
        """Ack, snooze or decision: a step under way must read the task afresh at its end."""
        self._changed.add(task_id)

    # ------------------------------------------------------------------ start
    async def recover(self) -> None:
        """Settle what a crash left ``claimed`` and load the unreachable phones."""
        now = self.clock()
        for row in await self.repository.expire_claimed(now):
            outcome = "retry" if row.channel in ("reassign", "decision") else "unknown"
            await self.audit(
                row.task_id,
                f"escalation.{row.channel}",
                outcome,
                f"{row.step}: interrupted by a restart while sending to {row.recipient}; "
                + ("sent again (idempotent)" if outcome == "retry" else "not repeated"),
            )
        self.unreachable = await self.repository.unreachable()

    async def rebuild(self) -> dict[str, datetime]:
        """Every open task's next wake-up from the store (in bulk): task id → when.

        A task with a ``claimed`` step wakes now (to resume it); a task with no step left
        has none. Yields to the event loop every 500 tasks (a big backlog at start).
        """
        now = self.clock()
        tasks = list(await self.tasks.open_tasks())
        steps = await self.repository.steps(t.task_id for t in tasks)
        self.history = dict(steps)
        wakes: dict[str, datetime] = {}
        for index, task in enumerate(tasks):
            if index % 500 == 499:
                await asyncio.sleep(0)
            rows = steps.get(task.task_id, [])
            if any(r.status == "claimed" for r in rows):
                wakes[task.task_id] = now
                continue
            try:
                nxt = self.next_due(task, rows)
            except ValueError:
                continue
            if nxt is not None:
                wakes[task.task_id] = nxt.deliver_at
        return wakes

    # ------------------------------------------------------------------ one wake-up
    async def wake(self, task_id: str, *, on_claimed: Callable[[], None] | None = None) -> None:
        """:meth:`on_wake` at the clock's now, then set the task's :class:`Alarm` (cancel it
        when nothing is left); a failure is logged and tried again 5 s later."""
        try:
            at = await self.on_wake(task_id, self.clock(), on_claimed=on_claimed)
        except Exception:
            log.exception("escalation of task %s failed", task_id)
            self.alarm.set(task_id, self.clock() + RETRY_WAKE)
            return
        finally:
            if on_claimed is not None:
                on_claimed()
        if at is None:
            self.alarm.cancel(task_id)
        else:
            self.alarm.set(task_id, at)

    async def on_wake(
        self, task_id: str, now: datetime, *, on_claimed: Callable[[], None] | None = None
    ) -> datetime | None:
        """Steps 1–5 of the module docstring for one task; its next wake-up (``None``: none).

        ``on_claimed`` is called once the due step is claimed (or known not to be), before
        its deliveries are done: the caller may then run the bundler for what was claimed.
        """
        claimed = on_claimed or _nothing
        self._changed.discard(task_id)  # this pass reads the state fresh
        task = await self.tasks.get(task_id)
        if task is None:
            return None
        if task.is_decided:
            await self._stop(task)
            return None
        rows = (await self.repository.steps([task_id])).get(task_id, [])
        self.history[task_id] = rows
        took = False
        after: list[LadderStepRow] | None = None  # the rows once this step is done
        unfinished = next((r for r in rows if r.status == "claimed"), None)
        if unfinished is not None:  # claimed before a crash: resume it (late)
            claimed()
            late = max(0.0, (self.clock() - unfinished.due_at).total_seconds())
            await self._run_step(task, StepKind(unfinished.step), late)
            took = True
        else:
            due = due_now(
                task.task.created_at,
                task.deadline,
                task.task.priority,
                self.policy,
                _state(task, rows),
                now,
            )
            if due:
                after = await self._take(task, due[0], rows, now, claimed)
                took = True
        claimed()
        if after and task_id not in self._changed:
            # nothing changed the task meanwhile (an ack, snooze or decision would have said
            # so through mark_changed): its state is what was read, plus this step
            return await self._next_wake(task, after, refresh=True)
        return await self._reread(task_id, refresh=took)

    async def _take(
        self,
        task: LadderTask,
        step: StepDue,
        rows: list[LadderStepRow],
        now: datetime,
        claimed: Callable[[], None],
    ) -> list[LadderStepRow]:
        """Claim ``step`` with its deliveries and do it; the rows afterwards when the claim
        finished the step by itself (all its deliveries are the bundler's), else ``[]``."""
        task_id = task.task_id
        late = step.late_by_seconds(now)
        planned = plan_deliveries(
            step,
            people=self.roster.people(),
            assignee=self.roster.assignee(task),
            unreachable=self.unreachable,
            safe_default=self.policy.safe_default,
        )
        # a step whose deliveries are all the bundler's has no side effect of its own: it is
        # written done in its claim (one write per reminder, not two)
        own = [d for d in planned if d.channel not in BUNDLED_CHANNELS]
        done_outcome = None if own else _outcome(late, planned)
        won = await self.repository.claim_step(
            task_id,
            step.kind.value,
            due_at=step.deliver_at,
            now=now,
            deliveries=planned,
            audit={
                "actor_name": ACTOR_NAME,
                "via": ACTOR_VIA,
                "action": f"escalation.{step.kind.value}",
                "outcome": "claimed",
                "task_id": task_id,
                "detail": (
                    f"due {step.deliver_at.isoformat()}{late_marker(late)}; "
                    + (", ".join(f"{d.channel}→{d.recipient}" for d in planned) or "nobody")
                )[:2000],
            },
            done_outcome=done_outcome,
        )
        claimed()
        if not won:
            return []
        self.new_bundle_keys.update(
            (d.recipient, d.channel) for d in planned if d.channel in BUNDLED_CHANNELS
        )
        if done_outcome is None:
            await self._run_step(task, step.kind, late)
            return []
        # nothing else wrote this task's steps: the caller holds its lock
        row = LadderStepRow(
            task_id, step.kind.value, step.deliver_at, now, late, "done", done_outcome
        )
        return [*rows, row]

    async def _reread(self, task_id: str, *, refresh: bool) -> datetime | None:
        """The task's next wake-up from its state read afresh."""
        task = await self.tasks.get(task_id)
        if task is None:
            return None
        rows = (await self.repository.steps([task_id])).get(task_id, [])
        return await self._next_wake(task, rows, refresh=refresh)

    async def _next_wake(
        self, task: LadderTask, rows: list[LadderStepRow], *, refresh: bool
    ) -> datetime | None:
        self.history[task.task_id] = rows
        if refresh:
            self.announcer.refresh(task.task_id)
        if task.is_decided:
            await self._stop(task)
            return None
        nxt = self.next_due(task, rows)
        if nxt is None:
            return None
        return max(nxt.deliver_at, self.clock()) if refresh else nxt.deliver_at

    async def _stop(self, task: LadderTask) -> None:
        """A decision stops everything still pending (issue: "Only a decision stops")."""
        self.alarm.cancel(task.task_id)
        self.history.pop(task.task_id, None)  # a decided task's message shows no ladder
        cancelled = await self.repository.cancel_pending(
            task.task_id, f"decided ({task.decision})", self.clock()
        )
        if cancelled:
            await self.audit(
                task.task_id,
                "escalation.stopped",
                "ok",
                f"{cancelled} pending notification(s) cancelled: task {task.decision}",
            )

    # ------------------------------------------------------------------ executing a step
    async def _run_step(self, task: LadderTask, kind: StepKind, late: float) -> None:
        """Do the step's own deliveries (not DM/SMS: the bundler's), then finish it."""
        task_id = task.task_id
        while True:
            rows = await self.repository.deliveries(task_id=task_id, step=kind.value)
            pending = [
                r for r in rows if r.status == "pending" and r.channel not in BUNDLED_CHANNELS
            ]
            if not pending:
                break
            row = next_own(pending)
            fresh = await self.tasks.get(task_id) or task
            reason = stop_reason(
                kind,
                row.channel,
                decision=fresh.decision if fresh.is_decided else None,
                acknowledged=fresh.acknowledged_at is not None,
            )
            if reason is not None:
                await self.repository.finish_delivery(
                    row.id, "cancelled", {"cancelled": reason}, self.clock()
                )
                continue
            if not await self.repository.claim_deliveries([row.id], self.clock()):
                continue
            try:
                status, detail = await self._deliver(fresh, kind, row.channel, row.recipient, late)
            except Exception as exc:  # a bug must not leave the row claimed forever
                log.exception("delivery %s of task %s failed", row.channel, task_id)
                status, detail = "failed", {"error": repr(exc)}
            await self.repository.finish_delivery(row.id, status, detail, self.clock())
            await self.audit(
                task_id,
                f"escalation.{row.channel}",
                status,
                f"{kind.value} → {row.recipient}: {detail.get('error') or detail.get('note') or 'ok'}",
            )
        rows = await self.repository.deliveries(task_id=task_id, step=kind.value)
        await self.repository.finish_step(
            task_id, kind.value, _outcome(late, rows), late_seconds=late
        )

    async def _deliver(
        self, task: LadderTask, kind: StepKind, channel: str, recipient: str, late: float
    ) -> DeliveryResult:
        people = self.roster.people()
        on_call = [p for p in people if p.on_call and p.discord_user_id]
        if channel == "reply" and kind is StepKind.REMINDER_MENTION:
            targets = reminder_targets(self.roster.assignee(task), people)
            detail = await self.retry(
                "Discord reply", lambda: self.announcer.reminder(task, targets, late)
            )
            return "sent", detail
        if channel == "reply":
            detail = await self.retry(
                "Discord reply", lambda: self.announcer.warning(task, on_call, late)
            )
            return "sent", detail
        if channel == "alert":
            detail = await self.retry(
                "Discord alert", lambda: self.announcer.breach_alert(task, on_call, late)
            )
            return "sent", detail
        if channel == "call":
            return await self._call(task, kind, recipient)
        if channel == "reassign":
            admin = self.person(recipient)
            if admin is None or not admin.factory_user_id:
                return "failed", {"error": f"{recipient} has no factory_user_id"}
            overdue = human_duration((self.clock() - task.deadline).total_seconds())
            reason = f"SLA breached {overdue} ago with no decision; escalated by Factory Bridge"
            return await self.decider.reassign(task, admin, reason)
        if channel == "decision":
            decision = self.policy.safe_default.decision
            if decision is None:  # pragma: no cover - not planned for "none"
                return "skipped", {"note": "ESCALATION_SAFE_DEFAULT is none"}
            notes = "No decision within the SLA: safe default ESCALATION_SAFE_DEFAULT applied"
            return await self.decider.safe_default(task, decision.value, notes)
        if channel == "incident":
            detail = await self.retry(
                "Discord incident report", lambda: self.announcer.incident_report(task)
            )
            return "sent", detail
        return "failed", {"error": f"unknown channel {channel}"}

    async def _call(self, task: LadderTask, kind: StepKind, recipient: str) -> DeliveryResult:
        person = self.person(recipient)
        if self.pager is None:
            log.info("Twilio is not configured: call to %s skipped", recipient)
            return "skipped", {"note": "Twilio not configured"}
        if person is None or person.phone is None:
            return "failed", {"error": f"{recipient} has no phone in the roster"}
        phone = person.phone
        pager = self.pager
        script = call_script([self.page_item(task, kind)])
        try:
            if phone in self.unreachable:
                raise RecipientUnreachable("phone marked unreachable (STOP)")
            sid = await self.retry("Twilio call", lambda: pager.call(phone, script))
        except RecipientUnreachable as exc:
            if phone not in self.unreachable:
                await self.phone_unreachable(person, phone, exc, task.task_id)
            nxt = await self.fallback(task, kind, "call", call_order(self.roster.people()))
            return "unreachable", {
                "error": str(exc),
                "phone": phone,
                "note": f"next on-call: {nxt or 'nobody left'}",
            }
        except DeliveryError as exc:
            return "failed", {"error": str(exc), "phone": phone}
        return "sent", {"sid": sid, "phone": phone}

    # ------------------------------------------------------------------ shared with the bundler
    def page_item(self, task: LadderTask, kind: StepKind) -> PageItem:
        """The task as an SMS or a call names it (how late: now − SLA deadline)."""
        return PageItem(
            task_id=task.task_id,
            title=task.task.title,
            priority=task.task.priority.value,
            overdue_seconds=(self.clock() - task.deadline).total_seconds(),
            step=kind,
        )

    async def retry(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """:func:`with_retries` with this service's delays and sleep."""
        return await with_retries(what, action, delays=self.retry_delays, sleep=self.sleep)

    async def phone_unreachable(
        self, person: Person, phone: str, error: DeliveryError, task_id: str
    ) -> None:
        """Twilio 21610: persist the phone as unreachable and audit it."""
        self.unreachable.add(phone)
        await self.repository.mark_unreachable(phone, person.key, error.code, self.clock())
        await self.audit(
            task_id,
            "escalation.phone_unreachable",
            "unreachable",
            f"{person.key}'s phone answered {error.code} (replied STOP); marked unreachable",
        )

    async def fallback(
        self, task: LadderTask, kind: StepKind, channel: str, order: Sequence[Person]
    ) -> str | None:
        """Add a delivery for the next person of ``order`` not tried yet; their key (``None``
        when nobody is left, audited)."""
        tried = {
            r.recipient
            for r in await self.repository.deliveries(
                task_id=task.task_id, step=kind.value, channels=[channel]
            )
        }
        nxt = next_fallback(order, tried, self.unreachable)
        if nxt is None:
            await self.audit(
                task.task_id,
                f"escalation.{channel}",
                "failed",
                f"{kind.value}: nobody left to try after {', '.join(sorted(tried))}",
            )
            return None
        await self.repository.add_delivery(
            task.task_id,
            kind.value,
            NewDelivery(channel, nxt.key, detail={"fallback_for": sorted(tried)}),
            due_at=self.clock(),
            now=self.clock(),
        )
        if channel in BUNDLED_CHANNELS:
            self.new_bundle_keys.add((nxt.key, channel))
        await self.audit(
            task.task_id,
            f"escalation.{channel}",
            "fallback",
            f"{kind.value}: trying the next on-call, {nxt.key}",
        )
        return nxt.key

    async def audit(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        """Audit through the port; a failure to audit is logged, never raised."""
        try:
            await self._audit_port(task_id, action, outcome, detail[:2000])
        except Exception:
            log.exception("could not audit %s for task %s", action, task_id)


def _nothing() -> None:
    return None


def _state(task: LadderTask, rows: Iterable[LadderStepRow]) -> LadderState:
    return LadderState(
        decided=task.is_decided,
        acknowledged_at=task.acknowledged_at,
        snoozed_until=task.snoozed_until,
        taken=frozenset(StepKind(r.step) for r in rows if r.step in STEP_VALUES),
    )


def _outcome(late: float, deliveries: Iterable[Any]) -> dict[str, Any]:
    """A finished step's stored outcome: lateness and each delivery's status."""
    return {
        "late_seconds": round(late, 3),
        "deliveries": [
            {
                "channel": d.channel,
                "recipient": d.recipient,
                "status": getattr(d, "status", "pending"),
            }
            for d in deliveries
        ],
    }
