"""The escalation ladder at run time: timers, the step executor, the bundler.

The rules live in the pure core (:mod:`escalation.ladder` — when each step is due;
:mod:`escalation.recipients` — who; :mod:`escalation.bundling` — what goes out together;
:mod:`escalation.notices` — SMS and call texts). This module is the adapter around them:
APScheduler for wake-ups, the store for the truth, Discord and Twilio for the side effects.

How a step is taken (issue: escalation ladder, "Exactly once across restarts")
-------------------------------------------------------------------------------
Timers are only wake-up calls. On a wake-up for a task, under the task's lock:

1. load the task from the store: decided → cancel whatever is still pending, stop;
2. load its steps: a step left ``claimed`` by a crash is **resumed** (below); otherwise
   :func:`escalation.ladder.due_now` says which step is due — the first one is taken (one
   step per wake-up; when more are due, the next wake-up is immediate);
3. **claim** the step and write every delivery it plans (one transaction, unique keys);
4. for each delivery, re-check the task (a decision stops everything still pending; an
   acknowledge stops reminder steps), claim the delivery, do the side effect (with retries),
   record its outcome; DMs and SMS are left ``pending`` for the bundler;
5. finish the step, re-render the task message (next step and when), set the next wake-up.

Restart semantics (decided here)
    A delivery found ``claimed`` at start may or may not have happened (kill -9 between the
    side effect and its row). It is **not** repeated: it becomes ``unknown`` and the incident
    report says so — except factory calls (reassign, safe default), which carry an
    Idempotency-Key and are simply sent again. A step found ``claimed`` is resumed: its
    deliveries that never started are done now, late. Every step that came due while the
    bridge was down is taken once, late, and marked "(late by …)".
Retries
    Discord 5xx/429, Twilio 5xx/429 and network errors are retried with backoff
    (:data:`RETRY_DELAYS`, ``Retry-After`` honoured); then the delivery is ``failed``.
Fallbacks
    A DM refused with 50007 → an @mention in a reply to the task message. Twilio 21610 → the
    phone is persisted as unreachable, audited, and the next on-call operator gets it.
    Without Twilio settings, SMS and calls are recorded as ``skipped``.
Bundling and quiet hours
    DMs and SMS go through :func:`escalation.bundling.plan_bundles` per (person, channel): the
    first goes at once, later ones within ``ESCALATION_BUNDLE_SECONDS`` wait and go out as
    one message. Steps held for quiet hours all come due at the window's end and leave as one
    digest per person and channel. Calls are never bundled (one call per critical task).
Timers
    One APScheduler 3 ``AsyncIOScheduler`` (in memory, ``misfire_grace_time=None``,
    ``coalesce=True``) holds ONE ``DateTrigger`` job: the soonest wake-up of all tasks (kept
    in a heap) and of the bundler. The job only sets an event; a single worker does the work,
    so a long step never makes APScheduler skip a run. At start every open task's next
    wake-up is rebuilt from the store in bulk.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

from bot.bridge import Actor, Bridge
from bot.factory.client import FactoryClient, FactoryError, FactoryUnavailable
from bot.keyed import KeyedLocks
from bot.roster import Operator
from bot.sla_events import factory_announced
from bot.store import TrackedTask
from bot.store.ladder import DeliveryRow, LadderStepRow, LadderStore, NewDelivery
from escalation.bundling import Bundle, BundleKey, Notification, plan_bundles, record_sent
from escalation.ladder import LadderState, StepDue, due_now, next_step
from escalation.markup import code_span, inline_text
from escalation.notices import (
    PRIORITY_LABELS,
    STEP_LABELS,
    NextStep,
    PageItem,
    call_twiml,
    human_duration,
    late_marker,
    sms_text,
)
from escalation.policy import REMINDER_STEPS, SafeDefault, StepKind
from escalation.ports import DeliveryError, Messenger, Pager, RecipientUnreachable
from escalation.recipients import (
    Person,
    call_order,
    next_fallback,
    reminder_targets,
    sms_order,
    sms_targets,
)

__all__ = [
    "ESCALATION_ACTOR",
    "RETRY_DELAYS",
    "WAKE_JOB_ID",
    "LadderRuntime",
    "fit_lines",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The actor of everything the ladder does (audit, the safe-default decision).
ESCALATION_ACTOR = Actor(name="escalation", via="system")

#: Backoff between attempts of a failing delivery (seconds): 5 attempts in about 7.5 s.
RETRY_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)

#: The one APScheduler job of the ladder.
WAKE_JOB_ID = "escalation-wake"

#: Person-addressed channels that go through the bundler.
BUNDLED_CHANNELS: tuple[str, ...] = ("dm", "sms")

#: Order of a step's own deliveries (issue: call, reassign, safe default, incident report).
_CHANNEL_RANK = {"reply": 0, "alert": 1, "call": 2, "reassign": 3, "decision": 4, "incident": 5}

_STATUS_ICON = {
    "sent": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "unreachable": "🚫",
    "unknown": "❔",
    "cancelled": "✖️",
    "pending": "⏳",
    "claimed": "⏳",
}

_STEP_VALUES = frozenset(k.value for k in StepKind)

#: At most this many tasks are processed at once (database pool, Discord pacing).
MAX_CONCURRENT_TASKS = 16

#: How long a wave of wake-ups waits for its steps to be claimed before the bundler runs.
CLAIM_WAIT_SECONDS = 5.0


def fit_lines(head: str, lines: list[str], *, limit: int, more: str) -> str:
    """``head`` and as many whole ``lines`` as fit in ``limit`` characters (Discord: 2000 per
    message), then ``more`` (with ``{n}`` = lines left out) instead of cutting a line."""
    kept = [head]
    length = len(head)
    for index, line in enumerate(lines):
        tail = "\n" + more.format(n=len(lines) - index)
        if length + 1 + len(line) + (len(tail) if index < len(lines) - 1 else 0) > limit:
            kept.append(tail.lstrip("\n"))
            break
        kept.append(line)
        length += 1 + len(line)
    return "\n".join(kept)


def _ts(at: datetime, style: str = "R") -> str:
    return f"<t:{int(at.timestamp())}:{style}>"


def _person(op: Operator) -> Person:
    return Person(
        key=op.name,
        discord_user_id=op.discord_user_id,
        phone=op.phone,
        factory_user_id=op.factory_user_id,
        on_call=op.on_call,
        admin=op.admin,
    )


class LadderRuntime:
    """The escalation ladder of a running bridge (implements ``bot.bridge.Escalation``).

    Parameters
    ----------
    bridge:
        The bridge (store, roster, policy, factory client, decisions, message refresh).
    messenger:
        Discord side (:class:`bot.discord.ladder_output.DiscordMessenger`, or a fake).
    pager:
        SMS and calls, or ``None`` without Twilio settings (those deliveries are ``skipped``).
    scheduler:
        An ``AsyncIOScheduler`` to share (one scheduler per process); one is made otherwise.
    clock:
        Current aware UTC time; the bridge's clock by default.
    retry_delays:
        Backoff between attempts of a failing delivery, seconds.
    """

    def __init__(
        self,
        *,
        bridge: Bridge,
        messenger: Messenger,
        pager: Pager | None,
        scheduler: AsyncIOScheduler | None = None,
        clock: Callable[[], datetime] | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        self.bridge = bridge
        self.settings = bridge.settings
        self.policy = bridge.policy
        self.messenger = messenger
        self.pager = pager
        self.ladder_store = LadderStore(bridge.store.db)
        self.clock = clock or bridge.clock
        self.retry_delays = tuple(retry_delays)
        self._own_scheduler = scheduler is None
        self.scheduler = scheduler or AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"misfire_grace_time": None, "coalesce": True, "max_instances": 1},
        )
        self._wake: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._history: dict[str, list[LadderStepRow]] = {}
        self._locks: KeyedLocks[str] = KeyedLocks()  # only while a step runs
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_TASKS)
        self._kick = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._refresh_pending: set[str] = set()
        # bundle keys (recipient, channel) that got new reminders since the last flush; the
        # first tick after start re-plans everything (restart: pending rows in the store)
        self._new_bundle_keys: set[tuple[str, str]] = set()
        self._flush_all = True
        self._refresher: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._flush_again = False
        # tasks whose state changed (ack, snooze, decision) while a step was being taken
        self._changed: set[str] = set()
        self._last_sent: dict[BundleKey, datetime] = {}
        self._bundle_wake: datetime | None = None
        self._armed_at: datetime | None = None
        self._unreachable: set[str] = set()
        self._started = False

    # ------------------------------------------------------------------ people
    def people(self) -> list[Person]:
        """The roster as the core sees it."""
        return [_person(op) for op in self.bridge.roster.operators]

    def person(self, key: str) -> Person | None:
        """The roster person with this key (name)."""
        return next((p for p in self.people() if p.key == key), None)

    def assignee(self, tracked: TrackedTask) -> Person | None:
        """The task's assignee, when the roster maps its ``assigneeId``."""
        op = self.bridge.roster.by_factory_id(tracked.task.assignee_id)
        return _person(op) if op is not None else None

    # ------------------------------------------------------------------ Escalation hooks
    async def task_opened(self, tracked: TrackedTask) -> None:
        """A task message was posted: plan its ladder (bridge hook)."""
        self._set_wake(tracked.task_id, self.clock())

    async def task_changed(self, task_id: str) -> None:
        """Ack, snooze or decision: re-check at once (never blocks on a running step)."""
        self._changed.add(task_id)
        self._set_wake(task_id, self.clock())

    # ------------------------------------------------------------------ message rendering
    def _state(self, tracked: TrackedTask, rows: Sequence[LadderStepRow]) -> LadderState:
        return LadderState(
            decided=tracked.is_decided,
            acknowledged_at=tracked.acknowledged_at,
            snoozed_until=tracked.snoozed_until,
            taken=frozenset(StepKind(r.step) for r in rows if r.step in _STEP_VALUES),
        )

    def _next(self, tracked: TrackedTask, rows: Sequence[LadderStepRow]) -> StepDue | None:
        """The task's next ladder step given the steps taken (``rows``); see
        :func:`escalation.ladder.next_step` (raises ``ValueError`` on inconsistent times)."""
        return next_step(
            tracked.task.created_at,
            tracked.deadline,
            tracked.task.priority,
            self.policy,
            self._state(tracked, rows),
        )

    def next_step_for(self, tracked: TrackedTask) -> NextStep | None:
        """What the task message shows: the next step and when, and the steps taken so far.

        Used as ``DiscordNotifier.next_step``; synchronous, from the in-memory copy of the
        step rows (refreshed after every step).
        """
        if tracked.is_decided:
            return None
        rows = self._history.get(tracked.task_id, [])
        taken = tuple(
            f"✓ {STEP_LABELS.get(StepKind(r.step), r.step)} {_ts(r.taken_at, 'T')}"
            f"{late_marker(r.late_seconds)}"
            for r in rows
            if r.step in _STEP_VALUES
        )
        try:
            nxt = self._next(tracked, rows)
        except ValueError:
            return None
        if nxt is None:
            return NextStep("none: every step was taken", None, taken)
        label = STEP_LABELS[nxt.kind]
        if nxt.held_for_quiet_hours:
            label += " (held for quiet hours)"
        elif nxt.delayed_by_snooze:
            label += " (after the snooze)"
        return NextStep(label, nxt.deliver_at, taken)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Settle what a crash left, rebuild every open task's wake-up, start the timer."""
        await self.recover()
        if not self.scheduler.running:
            self.scheduler.start()
        self._started = True
        self._worker = asyncio.create_task(self._run(), name="escalation-ladder")
        self._kick.set()

    async def recover(self) -> None:
        """The start without timers: settle claimed deliveries, load bad phones and bundle
        windows, rebuild the wake-ups (see the module docstring, "Restart semantics")."""
        now = self.clock()
        for row in await self.ladder_store.expire_claimed(now):
            outcome = "retry" if row.channel in ("reassign", "decision") else "unknown"
            await self._audit(
                row.task_id,
                f"escalation.{row.channel}",
                outcome,
                f"{row.step}: interrupted by a restart while sending to {row.recipient}; "
                + ("sent again (idempotent)" if outcome == "retry" else "not repeated"),
            )
        warm_up = getattr(self.pager, "warm_up", None)
        if warm_up is not None:
            await warm_up()
        self._unreachable = await self.ladder_store.unreachable()
        self._last_sent = await self.ladder_store.last_sent(BUNDLED_CHANNELS)
        await self.rebuild()

    async def rebuild(self) -> int:
        """Compute every open task's next wake-up from the store (bulk); how many are armed."""
        now = self.clock()
        tasks = [t for t in await self.bridge.store.open_tasks() if t.has_message]
        steps = await self.ladder_store.steps(t.task_id for t in tasks)
        self._history = {tid: rows for tid, rows in steps.items()}
        armed = 0
        for index, tracked in enumerate(tasks):
            if index % 500 == 499:
                await asyncio.sleep(0)  # keep the Discord heartbeat going on a big backlog
            rows = steps.get(tracked.task_id, [])
            if any(r.status == "claimed" for r in rows):
                self._set_wake(tracked.task_id, now, kick=False)
                armed += 1
                continue
            try:
                nxt = self._next(tracked, rows)
            except ValueError:
                continue
            if nxt is not None:
                self._set_wake(tracked.task_id, nxt.deliver_at, kick=False)
                armed += 1
        log.info("escalation ladder armed for %d open tasks", armed)
        return armed

    def _queue_refresh(self, task_id: str) -> None:
        """Re-render the task's message soon, off the step's critical path.

        Refreshes are coalesced per task and done one at a time by a background loop: under a
        storm of due steps the messages may lag a little, but no step waits for a message edit
        (nor for Discord's edit rate).
        """
        self._refresh_pending.add(task_id)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_loop(), name="ladder-refresh")
            self._background.add(self._refresher)
            self._refresher.add_done_callback(self._background.discard)

    async def _refresh_loop(self) -> None:
        while self._refresh_pending:
            task_id = self._refresh_pending.pop()
            try:
                await self.bridge.refresh_message(task_id)
            except Exception:
                log.exception("could not refresh the message of task %s", task_id)

    async def stop(self) -> None:
        """Stop the timer and the worker; steps under way get a moment to finish."""
        self._started = False
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
        if self._background:
            _, pending = await asyncio.wait(set(self._background), timeout=2.0)
            for task in pending:
                task.cancel()
        if self._own_scheduler and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self.pager is not None:
            await self.pager.aclose()

    # ------------------------------------------------------------------ timers
    def _set_wake(self, task_id: str, at: datetime, *, kick: bool = True) -> None:
        ts = at.timestamp()
        self._wake[task_id] = ts
        heapq.heappush(self._heap, (ts, task_id))
        self._compact_heap()
        if not kick:
            return
        if ts <= self.clock().timestamp():
            self._kick.set()
        else:
            self._arm()

    def wake_at(self, task_id: str) -> datetime | None:
        """When the task's next wake-up is set (aware UTC), or ``None``."""
        ts = self._wake.get(task_id)
        return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)

    def _forget(self, task_id: str) -> None:
        self._wake.pop(task_id, None)
        self._compact_heap()

    def _compact_heap(self) -> None:
        """Drop stale timer entries once they outnumber the live ones (plus 1,024).

        Entries of re-planned and forgotten (decided) tasks otherwise wait in the heap until
        their time, days for a low-priority SLA: the heap stays proportional to the tasks
        that have a wake-up, at an amortised constant cost.
        """
        if len(self._heap) > 2 * len(self._wake) + 1024:
            self._heap = [(t, i) for t, i in self._heap if self._wake.get(i) == t]
            heapq.heapify(self._heap)

    def _pop_due(self, now: datetime) -> list[str]:
        due: list[str] = []
        limit = now.timestamp()
        while self._heap and self._heap[0][0] <= limit:
            ts, task_id = heapq.heappop(self._heap)
            if self._wake.get(task_id) == ts:
                del self._wake[task_id]
                due.append(task_id)
        return due

    def _soonest(self) -> datetime | None:
        while self._heap and self._wake.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)
        candidates = []
        if self._heap:
            candidates.append(datetime.fromtimestamp(self._heap[0][0], tz=UTC))
        if self._bundle_wake is not None:
            candidates.append(self._bundle_wake)
        return min(candidates) if candidates else None

    def _arm(self) -> None:
        """Point the one APScheduler job at the soonest wake-up (or kick now)."""
        if not self._started:
            return
        when = self._soonest()
        if when is None:
            return
        if when <= self.clock():
            self._kick.set()
            return
        if self._armed_at == when and self.scheduler.get_job(WAKE_JOB_ID) is not None:
            return
        self._armed_at = when
        self.scheduler.add_job(
            self._on_timer,
            trigger=DateTrigger(run_date=when),
            id=WAKE_JOB_ID,
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
            max_instances=1,
        )

    async def _on_timer(self) -> None:
        self._armed_at = None
        self._kick.set()

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation wake-up failed")
            # a tick may set the kick again at once (Event.wait then returns without
            # suspending): let the rest of the loop run between two ticks
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ one wake-up
    async def tick(self) -> None:
        """Take what is due now: one step per due task, then the bundler; re-arm the timer.

        The worker calls it on every wake-up; tests may call it directly.
        """
        now = self.clock()
        claims: list[asyncio.Event] = []
        for task_id in self._pop_due(now):
            claimed = asyncio.Event()
            claims.append(claimed)
            self._spawn(self._process(task_id, claimed))
        if claims:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(c.wait() for c in claims)), CLAIM_WAIT_SECONDS
                )
        if self._needs_flush(self.clock()):
            self._start_flush()
        self._arm()

    def _needs_flush(self, now: datetime) -> bool:
        """Whether a bundle can go out now: a held bundle's time came, or a new reminder is
        for someone whose bundle window is closed. Otherwise new reminders just join their
        person's open window, and the wake-up at its end sends them (no re-planning on every
        tick, which was quadratic in the pending reminders during a storm)."""
        new_keys, self._new_bundle_keys = self._new_bundle_keys, set()
        if self._flush_all:
            self._flush_all = False
            return True
        due = self._bundle_wake is not None and now >= self._bundle_wake
        window = timedelta(seconds=self.policy.bundle_seconds)
        for key in new_keys:
            last = self._last_sent.get(key)
            if last is None or now - last >= window:
                due = True
            else:  # held until that person's window closes
                ends = last + window
                if self._bundle_wake is None or ends < self._bundle_wake:
                    self._bundle_wake = ends
        return due

    def _start_flush(self) -> None:
        """Run the bundler in the background, one flush at a time.

        A flush reads every pending reminder (thousands in a storm) and may take a while;
        steps coming due meanwhile must not wait for it. Asked again while one runs, it runs
        once more when that one ends.
        """
        self._bundle_wake = None  # the flush sets it again for what it holds back
        if self._flusher is not None and not self._flusher.done():
            self._flush_again = True
            return
        self._flusher = self._spawn(self._flush_loop())

    async def _flush_loop(self) -> None:
        while True:
            self._flush_again = False
            try:
                await self.flush_bundles()
            except Exception:
                log.exception("sending bundled notifications failed")
            if not self._flush_again:
                break
        self._arm()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def drain(self) -> None:
        """Wait until every step and send under way has finished (tests)."""
        while self._background:
            await asyncio.gather(*set(self._background), return_exceptions=True)

    def _lock(self, task_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """The task's step lock (``async with``); forgotten once nobody holds it."""
        return self._locks(task_id)

    async def _process(self, task_id: str, claimed: asyncio.Event) -> None:
        try:
            async with self._sem, self._lock(task_id):
                await self._process_locked(task_id, claimed)
        except Exception:
            log.exception("escalation of task %s failed", task_id)
            self._set_wake(task_id, self.clock() + timedelta(seconds=5))
        finally:
            claimed.set()

    async def _process_locked(self, task_id: str, claimed: asyncio.Event) -> None:
        self._changed.discard(task_id)  # this pass reads the state fresh
        tracked = await self.bridge.store.get_task(task_id)
        if tracked is None:
            self._forget(task_id)
            return
        if tracked.is_decided:
            await self._stop_task(tracked)
            return
        rows = (await self.ladder_store.steps([task_id])).get(task_id, [])
        self._history[task_id] = rows
        took = False
        after: list[LadderStepRow] | None = None  # the rows once this step is done
        unfinished = next((r for r in rows if r.status == "claimed"), None)
        if unfinished is not None:  # claimed before a crash: resume it (late)
            claimed.set()
            late = max(0.0, (self.clock() - unfinished.due_at).total_seconds())
            await self._run_step(tracked, StepKind(unfinished.step), late)
            took = True
        else:
            now = self.clock()
            due = due_now(
                tracked.task.created_at,
                tracked.deadline,
                tracked.task.priority,
                self.policy,
                self._state(tracked, rows),
                now,
            )
            if due:
                step = due[0]
                late = step.late_by_seconds(now)
                planned = self._plan(tracked, step)
                # a step whose deliveries are all the bundler's has no side effect of its own:
                # it is written done in its claim (one write per reminder, not two)
                own = [d for d in planned if d.channel not in BUNDLED_CHANNELS]
                done_outcome = (
                    None
                    if own
                    else {
                        "late_seconds": round(late, 3),
                        "deliveries": [
                            {"channel": d.channel, "recipient": d.recipient, "status": "pending"}
                            for d in planned
                        ],
                    }
                )
                won = await self.ladder_store.claim_step(
                    task_id,
                    step.kind.value,
                    due_at=step.deliver_at,
                    now=now,
                    deliveries=planned,
                    audit={
                        "actor_name": ESCALATION_ACTOR.name,
                        "via": ESCALATION_ACTOR.via,
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
                claimed.set()
                if won:
                    self._new_bundle_keys.update(
                        (d.recipient, d.channel) for d in planned if d.channel in BUNDLED_CHANNELS
                    )
                    if done_outcome is None:
                        await self._run_step(tracked, step.kind, late)
                    else:  # nothing else wrote this task's steps: we hold its lock
                        after = [
                            *rows,
                            LadderStepRow(
                                task_id,
                                step.kind.value,
                                step.deliver_at,
                                now,
                                late,
                                "done",
                                done_outcome,
                            ),
                        ]
                    took = True
        claimed.set()
        if after is not None and task_id not in self._changed:
            # nothing changed the task meanwhile (an ack, snooze or decision would have
            # said so through task_changed): its state is what was read, plus this step
            await self._set_next(tracked, after, refresh=True)
            return
        await self._reschedule(task_id, refresh=took)

    async def _reschedule(self, task_id: str, *, refresh: bool) -> None:
        """Set the task's next wake-up from its state read afresh."""
        tracked = await self.bridge.store.get_task(task_id)
        if tracked is None:
            self._forget(task_id)
            return
        rows = (await self.ladder_store.steps([task_id])).get(task_id, [])
        await self._set_next(tracked, rows, refresh=refresh)

    async def _set_next(
        self, tracked: TrackedTask, rows: list[LadderStepRow], *, refresh: bool
    ) -> None:
        task_id = tracked.task_id
        self._history[task_id] = rows
        if refresh:
            self._queue_refresh(task_id)
        if tracked.is_decided:
            await self._stop_task(tracked)
            return
        nxt = self._next(tracked, rows)
        if nxt is None:
            self._forget(task_id)
        else:
            self._set_wake(
                task_id, max(nxt.deliver_at, self.clock()) if refresh else nxt.deliver_at
            )

    async def _stop_task(self, tracked: TrackedTask) -> None:
        """A decision stops everything still pending (issue: "Only a decision stops")."""
        self._forget(tracked.task_id)
        self._history.pop(tracked.task_id, None)  # a decided task's message shows no ladder
        cancelled = await self.ladder_store.cancel_pending(
            tracked.task_id, f"decided ({tracked.decision})", self.clock()
        )
        if cancelled:
            await self._audit(
                tracked.task_id,
                "escalation.stopped",
                "ok",
                f"{cancelled} pending notification(s) cancelled: task {tracked.decision}",
            )

    # ------------------------------------------------------------------ planning
    def _plan(self, tracked: TrackedTask, step: StepDue) -> list[NewDelivery]:
        """The deliveries of ``step`` for ``tracked`` (who, through what)."""
        people = self.people()
        assignee = self.assignee(tracked)
        held = step.held_for_quiet_hours
        kind = step.kind
        if kind is StepKind.REMINDER_DM:
            return [NewDelivery("dm", p.key, held) for p in reminder_targets(assignee, people)]
        if kind in (StepKind.REMINDER_MENTION, StepKind.SLA_WARNING):
            return [NewDelivery("reply", "task", held)]
        if kind is StepKind.SLA_BREACH:
            sms = [
                NewDelivery("sms", p.key, held)
                for p in sms_targets(assignee, people, self._unreachable)
            ]
            return [NewDelivery("alert", "alerts", held), *sms]
        planned: list[NewDelivery] = []
        first = next_fallback(call_order(people), (), self._unreachable)
        if first is not None:
            planned.append(NewDelivery("call", first.key, held))
        admin = next((p for p in people if p.admin and p.factory_user_id), None)
        if admin is not None:
            planned.append(NewDelivery("reassign", admin.key, held))
        if self.policy.safe_default is not SafeDefault.NONE:
            planned.append(NewDelivery("decision", self.policy.safe_default.value, held))
        planned.append(NewDelivery("incident", "alerts", held))
        return planned

    # ------------------------------------------------------------------ executing a step
    async def _run_step(self, tracked: TrackedTask, kind: StepKind, late: float) -> None:
        """Do the step's own deliveries (not DM/SMS: the bundler's), then finish it."""
        task_id = tracked.task_id
        while True:
            rows = await self.ladder_store.deliveries(task_id=task_id, step=kind.value)
            pending = [
                r for r in rows if r.status == "pending" and r.channel not in BUNDLED_CHANNELS
            ]
            if not pending:
                break
            row = min(pending, key=lambda r: (_CHANNEL_RANK.get(r.channel, 9), r.id))
            fresh = await self.bridge.store.get_task(task_id) or tracked
            reason = self._stop_reason(fresh, kind, row.channel)
            if reason is not None:
                await self.ladder_store.finish_delivery(
                    row.id, "cancelled", {"cancelled": reason}, self.clock()
                )
                continue
            if not await self.ladder_store.claim_deliveries([row.id], self.clock()):
                continue
            try:
                status, detail = await self._deliver(fresh, kind, row, late)
            except Exception as exc:  # a bug must not leave the row claimed forever
                log.exception("delivery %s of task %s failed", row.channel, task_id)
                status, detail = "failed", {"error": repr(exc)}
            await self.ladder_store.finish_delivery(row.id, status, detail, self.clock())
            await self._audit(
                task_id,
                f"escalation.{row.channel}",
                status,
                f"{kind.value} → {row.recipient}: {detail.get('error') or detail.get('note') or 'ok'}",
            )
        rows = await self.ladder_store.deliveries(task_id=task_id, step=kind.value)
        await self.ladder_store.finish_step(
            task_id,
            kind.value,
            {
                "late_seconds": round(late, 3),
                "deliveries": [
                    {"channel": r.channel, "recipient": r.recipient, "status": r.status}
                    for r in rows
                ],
            },
            late_seconds=late,
        )

    @staticmethod
    def _stop_reason(tracked: TrackedTask, kind: StepKind, channel: str) -> str | None:
        if tracked.is_decided and channel != "incident":
            return f"task {tracked.decision}"
        if kind in REMINDER_STEPS and tracked.acknowledged_at is not None:
            return "acknowledged"
        return None

    async def _deliver(
        self, tracked: TrackedTask, kind: StepKind, row: DeliveryRow, late: float
    ) -> tuple[str, dict[str, Any]]:
        if row.channel == "reply":
            return await self._reply_step(tracked, kind, late)
        if row.channel == "alert":
            return await self._breach_alert(tracked, late)
        if row.channel == "call":
            return await self._call(tracked, kind, row)
        if row.channel == "reassign":
            return await self._reassign(tracked, row)
        if row.channel == "decision":
            return await self._safe_default(tracked)
        if row.channel == "incident":
            return await self._incident_report(tracked)
        return "failed", {"error": f"unknown channel {row.channel}"}

    def _link(self, tracked: TrackedTask) -> str:
        if tracked.channel_id is None or tracked.message_id is None:
            return f"task {code_span(tracked.task_id)}"
        guild = self.settings.discord_guild_id
        return f"https://discord.com/channels/{guild}/{tracked.channel_id}/{tracked.message_id}"

    async def _post_on_task(
        self, tracked: TrackedTask, content: str, *, user_ids: Sequence[int], everyone: bool
    ) -> int:
        channel = tracked.channel_id or self.settings.discord_tasks_channel_id
        return await self._retry(
            "Discord reply",
            lambda: self.messenger.post(
                channel,
                content[:2000],
                reply_to=tracked.message_id,
                user_ids=user_ids,
                everyone=everyone,
            ),
        )

    def _on_call_ids(self) -> list[int]:
        return [p.discord_user_id for p in self.people() if p.on_call and p.discord_user_id]

    async def _reply_step(
        self, tracked: TrackedTask, kind: StepKind, late: float
    ) -> tuple[str, dict[str, Any]]:
        title = inline_text(tracked.task.title)  # factory text: never pings, no markdown
        deadline = _ts(tracked.deadline)
        if kind is StepKind.REMINDER_MENTION:
            targets = reminder_targets(self.assignee(tracked), self.people())
            ids = [p.discord_user_id for p in targets if p.discord_user_id]
            who = " ".join(f"<@{i}>" for i in ids) or "Nobody is on call in the roster:"
            content = (
                f"⏰ {who} reminder: **{title}** is still waiting for a decision "
                f"(SLA deadline {deadline}).{late_marker(late)}"
            )
            message_id = await self._post_on_task(tracked, content, user_ids=ids, everyone=False)
            return "sent", {"message_id": message_id, "mentioned": ids}
        if (
            posted := await factory_announced(self.bridge.store, tracked.task_id, kind)
        ) is not None:
            return "skipped", {"message_id": posted, "note": "the factory's warning was posted"}
        channel = tracked.channel_id or self.settings.discord_tasks_channel_id
        everyone = self.messenger.may_mention_everyone(channel)
        ids = [] if everyone else self._on_call_ids()
        ping = "@here" if everyone else (" ".join(f"<@{i}>" for i in ids) or "on-call")
        content = (
            f"🔴 SLA breach imminent {ping}: **{title}** breaches its SLA {deadline}."
            f"{late_marker(late)}"
        )
        message_id = await self._post_on_task(tracked, content, user_ids=ids, everyone=everyone)
        note = "@here" if everyone else "no MENTION_EVERYONE permission: on-call mentioned"
        return "sent", {"message_id": message_id, "mentioned": ids, "note": note}

    async def _breach_alert(self, tracked: TrackedTask, late: float) -> tuple[str, dict[str, Any]]:
        if (
            posted := await factory_announced(self.bridge.store, tracked.task_id, "sla_breach")
        ) is not None:
            return "skipped", {
                "message_id": posted,
                "note": "the factory's breach alert was posted",
            }
        channel = self.settings.alerts_channel_id
        everyone = self.messenger.may_mention_everyone(channel)
        ids = [] if everyone else self._on_call_ids()
        ping = "@here" if everyone else (" ".join(f"<@{i}>" for i in ids) or "on-call")
        priority = PRIORITY_LABELS.get(tracked.task.priority, tracked.task.priority.value)
        content = (
            f"🚨 SLA breached {ping}: **{inline_text(tracked.task.title)}** ({priority}) "
            "passed its deadline "
            f"{_ts(tracked.deadline)}{late_marker(late)}. {self._link(tracked)}"
        )
        message_id = await self._retry(
            "Discord alert",
            lambda: self.messenger.post(channel, content[:2000], user_ids=ids, everyone=everyone),
        )
        return "sent", {"message_id": message_id, "everyone": everyone}

    def _page_item(self, tracked: TrackedTask, kind: StepKind) -> PageItem:
        overdue = (self.clock() - tracked.deadline).total_seconds()
        return PageItem(
            task_id=tracked.task_id,
            title=tracked.task.title,
            priority=tracked.task.priority.value,
            overdue_seconds=overdue,
            step=kind,
        )

    async def _phone_unreachable(
        self, person: Person, phone: str, error: DeliveryError, task_id: str
    ) -> None:
        """Twilio 21610: persist the phone as unreachable and audit it."""
        self._unreachable.add(phone)
        await self.ladder_store.mark_unreachable(phone, person.key, error.code, self.clock())
        await self._audit(
            task_id,
            "escalation.phone_unreachable",
            "unreachable",
            f"{person.key}'s phone answered {error.code} (replied STOP); marked unreachable",
        )

    async def _call(
        self, tracked: TrackedTask, kind: StepKind, row: DeliveryRow
    ) -> tuple[str, dict[str, Any]]:
        person = self.person(row.recipient)
        if self.pager is None:
            log.info("Twilio is not configured: call to %s skipped", row.recipient)
            return "skipped", {"note": "Twilio not configured"}
        if person is None or person.phone is None:
            return "failed", {"error": f"{row.recipient} has no phone in the roster"}
        phone = person.phone
        pager = self.pager
        twiml = call_twiml([self._page_item(tracked, kind)])
        try:
            if phone in self._unreachable:
                raise RecipientUnreachable("phone marked unreachable (STOP)")
            sid = await self._retry("Twilio call", lambda: pager.call(phone, twiml))
        except RecipientUnreachable as exc:
            if phone not in self._unreachable:
                await self._phone_unreachable(person, phone, exc, tracked.task_id)
            nxt = await self._fallback(tracked, kind, "call", call_order(self.people()))
            return "unreachable", {
                "error": str(exc),
                "phone": phone,
                "note": f"next on-call: {nxt or 'nobody left'}",
            }
        except DeliveryError as exc:
            return "failed", {"error": str(exc), "phone": phone}
        return "sent", {"sid": sid, "phone": phone}

    async def _fallback(
        self, tracked: TrackedTask, kind: StepKind, channel: str, order: Sequence[Person]
    ) -> str | None:
        """Add a delivery for the next person of ``order`` not tried yet; their key."""
        tried = {
            r.recipient
            for r in await self.ladder_store.deliveries(
                task_id=tracked.task_id, step=kind.value, channels=[channel]
            )
        }
        nxt = next_fallback(order, tried, self._unreachable)
        if nxt is None:
            await self._audit(
                tracked.task_id,
                f"escalation.{channel}",
                "failed",
                f"{kind.value}: nobody left to try after {', '.join(sorted(tried))}",
            )
            return None
        await self.ladder_store.add_delivery(
            tracked.task_id,
            kind.value,
            NewDelivery(channel, nxt.key, detail={"fallback_for": sorted(tried)}),
            due_at=self.clock(),
            now=self.clock(),
        )
        if channel in BUNDLED_CHANNELS:
            self._new_bundle_keys.add((nxt.key, channel))
        await self._audit(
            tracked.task_id,
            f"escalation.{channel}",
            "fallback",
            f"{kind.value}: trying the next on-call, {nxt.key}",
        )
        return nxt.key

    async def _reassign(self, tracked: TrackedTask, row: DeliveryRow) -> tuple[str, dict[str, Any]]:
        admin = self.person(row.recipient)
        if admin is None or not admin.factory_user_id:
            return "failed", {"error": f"{row.recipient} has no factory_user_id"}
        overdue = human_duration((self.clock() - tracked.deadline).total_seconds())
        try:
            await self.bridge.factory.reassign_task(
                tracked.task_id,
                assignee_id=admin.factory_user_id,
                reason=f"SLA breached {overdue} ago with no decision; escalated by Factory Bridge",
                idempotency_key=FactoryClient.new_idempotency_key(
                    f"escalation:{tracked.task_id}:reassign"
                ),
            )
        except (FactoryError, FactoryUnavailable) as exc:
            return "failed", {"error": str(exc)}
        return "sent", {"assignee": admin.factory_user_id}

    async def _safe_default(self, tracked: TrackedTask) -> tuple[str, dict[str, Any]]:
        decision = self.policy.safe_default.decision
        if decision is None:  # pragma: no cover - not planned for "none"
            return "skipped", {"note": "ESCALATION_SAFE_DEFAULT is none"}
        outcome = await self.bridge.decide(
            tracked.task_id,
            decision.value,
            ESCALATION_ACTOR,
            notes="No decision within the SLA: safe default ESCALATION_SAFE_DEFAULT applied",
            idempotency_seed=f"escalation:{tracked.task_id}:safe-default",
            skip_role_check=True,
        )
        status = "sent" if outcome.ok else ("skipped" if outcome.kind == "conflict" else "failed")
        return status, {"decision": decision.value, "note": outcome.message}

    async def _incident_report(self, tracked: TrackedTask) -> tuple[str, dict[str, Any]]:
        content = await self.incident_text(tracked)
        message_id = await self._retry(
            "Discord incident report",
            lambda: self.messenger.post(self.settings.alerts_channel_id, content),
        )
        return "sent", {"message_id": message_id}

    async def incident_text(self, tracked: TrackedTask) -> str:
        """The incident report: every step taken, who was notified, when, through what."""
        fresh = await self.bridge.store.get_task(tracked.task_id) or tracked
        steps = (await self.ladder_store.steps([fresh.task_id])).get(fresh.task_id, [])
        deliveries = await self.ladder_store.deliveries(task_id=fresh.task_id)
        task = fresh.task
        lines = [
            f"📋 **Incident report**: **{inline_text(task.title)}** ({code_span(task.id)}), "
            f"{PRIORITY_LABELS.get(task.priority, task.priority.value)}",
            f"Created {_ts(task.created_at, 'T')}, SLA deadline {_ts(fresh.deadline, 'T')}, "
            f"no decision {human_duration((self.clock() - fresh.deadline).total_seconds())} "
            "after the deadline.",
        ]
        for step in steps:
            label = STEP_LABELS.get(StepKind(step.step), step.step)
            lines.append(
                f"**{label}** due {_ts(step.due_at, 'T')}, taken {_ts(step.taken_at, 'T')}"
                f"{late_marker(step.late_seconds)}:"
            )
            for d in (x for x in deliveries if x.step == step.step):
                when = d.claimed_at or d.finished_at
                at = f" at {_ts(when, 'T')}" if when else ""
                via = d.detail.get("via")
                extra = f" (via {via})" if via else ""
                if d.channel in ("incident",):
                    continue
                lines.append(
                    f"  • {d.channel} → {d.recipient}: {_STATUS_ICON.get(d.status, '')} "
                    f"{d.status}{at}{extra}"
                )
        if fresh.is_decided:
            who = inline_text(fresh.decided_by or "the factory", 100)
            lines.append(f"Decision: {fresh.decision} by {who}.")
        text = "\n".join(lines)
        return text if len(text) <= 2000 else text[:1990] + "\n…"

    # ------------------------------------------------------------------ the bundler
    async def flush_bundles(self) -> None:
        """Send what the bundle rules allow now (one DM / one SMS per person and window)."""
        # cleared before reading: a wake-up a tick asks for from now on is kept (see the end)
        self._bundle_wake = None
        rows = await self.ladder_store.deliveries(statuses=["pending"], channels=BUNDLED_CHANNELS)
        if not rows:
            return
        now = self.clock()
        tasks = {
            t.task_id: t
            for t in await self.bridge.store.tasks_by_ids(list({r.task_id for r in rows}))
        }
        live: list[Notification] = []
        by_id: dict[int, DeliveryRow] = {}
        for row in rows:
            tracked = tasks.get(row.task_id)
            reason = (
                "task unknown"
                if tracked is None
                else self._stop_reason(tracked, StepKind(row.step), row.channel)
            )
            if reason is not None:
                await self.ladder_store.finish_delivery(
                    row.id, "cancelled", {"cancelled": reason}, now
                )
                await self._audit(row.task_id, f"escalation.{row.channel}", "cancelled", reason)
                continue
            by_id[row.id] = row
            live.append(
                Notification(
                    recipient=row.recipient,
                    channel=row.channel,
                    task_id=row.task_id,
                    step=StepKind(row.step),
                    due_at=row.due_at,
                    held_for_quiet_hours=row.held,
                    text=str(row.id),
                )
            )
        plan = plan_bundles(live, self._last_sent, now, self.policy.bundle_seconds)
        for bundle in plan.send_now:
            ids = [int(n.text) for n in bundle.items]
            if not await self.ladder_store.claim_deliveries(ids, now):
                continue
            self._last_sent = record_sent(self._last_sent, [bundle], now)
            items = [(by_id[i], tasks[by_id[i].task_id]) for i in ids]
            self._spawn(self._send_bundle(bundle, items))
        # a wake-up asked for by a tick while this flush ran is kept (the earlier wins)
        wakes = [w for w in (self._bundle_wake, plan.hold_until) if w is not None]
        self._bundle_wake = min(wakes) if wakes else None

    async def _send_bundle(
        self, bundle: Bundle, items: list[tuple[DeliveryRow, TrackedTask]]
    ) -> None:
        try:
            if bundle.channel == "dm":
                results = await self._send_dm_bundle(bundle, items)
            else:
                results = await self._send_sms_bundle(bundle, items)
        except Exception as exc:
            log.exception("sending a bundle to %s failed", bundle.recipient)
            results = [(row, "failed", {"error": repr(exc)}) for row, _ in items]
        size = len(items)
        try:
            await self.ladder_store.finish_deliveries(
                [
                    (row.id, status, {**detail, "bundle_size": size})
                    for row, status, detail in results
                ],
                self.clock(),
                audits=[
                    {
                        "actor_name": ESCALATION_ACTOR.name,
                        "via": ESCALATION_ACTOR.via,
                        "action": f"escalation.{row.channel}",
                        "outcome": status,
                        "task_id": row.task_id,
                        "detail": (
                            f"{row.step} → {row.recipient}"
                            + (f" (one of {size} in one message)" if size > 1 else "")
                            + (" [quiet-hours digest]" if bundle.is_digest else "")
                            + (f": {detail.get('error') or detail.get('note')}" if detail else "")
                        )[:2000],
                    }
                    for row, status, detail in results
                ],
            )
        except Exception:
            log.exception("could not record the outcome of a bundle to %s", bundle.recipient)
        if any(status == "unreachable" for _, status, _ in results):
            self._kick.set()  # a fallback delivery was added

    def _dm_text(self, bundle: Bundle, items: list[tuple[DeliveryRow, TrackedTask]]) -> str:
        now = self.clock()
        lines = []
        for row, tracked in items:
            late = late_marker((now - row.due_at).total_seconds())
            step = STEP_LABELS.get(StepKind(row.step), row.step)
            lines.append(
                f"• **{inline_text(tracked.task.title)}** "
                f"({PRIORITY_LABELS.get(tracked.task.priority, tracked.task.priority.value)}) "
                f"SLA deadline {_ts(tracked.deadline)} [{step}]{late} {self._link(tracked)}"
            )
        if bundle.is_digest:
            head = f"🌙 Quiet hours are over. Held for you overnight ({len(items)}):"
        elif len(items) == 1:
            head = "⏰ Reminder: a task is waiting for your decision:"
        else:
            head = f"⏰ Reminder: {len(items)} tasks are waiting for your decision:"
        return fit_lines(head, lines, limit=2000, more="…and {n} more: see /factory pending")

    async def _send_dm_bundle(
        self, bundle: Bundle, items: list[tuple[DeliveryRow, TrackedTask]]
    ) -> list[tuple[DeliveryRow, str, dict[str, Any]]]:
        person = self.person(bundle.recipient)
        if person is None or person.discord_user_id is None:
            return [(r, "failed", {"error": "no Discord id in the roster"}) for r, _ in items]
        user_id = person.discord_user_id
        text = self._dm_text(bundle, items)
        try:
            message_id = await self._retry(
                "Discord DM", lambda: self.messenger.send_dm(user_id, text)
            )
        except RecipientUnreachable as exc:
            # DMs closed (50007): @mention them in a reply to each task message instead
            results: list[tuple[DeliveryRow, str, dict[str, Any]]] = []
            for row, tracked in items:
                content = (
                    f"📬 <@{user_id}> I could not DM you: **{inline_text(tracked.task.title)}** "
                    "is waiting "
                    f"for your decision (SLA deadline {_ts(tracked.deadline)})."
                )
                try:
                    mid = await self._post_on_task(
                        tracked, content, user_ids=[user_id], everyone=False
                    )
                    results.append(
                        (
                            row,
                            "sent",
                            {"via": "reply @mention", "dm_error": str(exc), "message_id": mid},
                        )
                    )
                except DeliveryError as err:
                    results.append((row, "failed", {"error": str(err), "dm_error": str(exc)}))
            return results
        except DeliveryError as exc:
            return [(r, "failed", {"error": str(exc)}) for r, _ in items]
        return [(r, "sent", {"message_id": message_id, "via": "DM"}) for r, _ in items]

    async def _send_sms_bundle(
        self, bundle: Bundle, items: list[tuple[DeliveryRow, TrackedTask]]
    ) -> list[tuple[DeliveryRow, str, dict[str, Any]]]:
        if self.pager is None:
            log.info("Twilio is not configured: SMS to %s skipped", bundle.recipient)
            return [(r, "skipped", {"note": "Twilio not configured"}) for r, _ in items]
        person = self.person(bundle.recipient)
        if person is None or person.phone is None:
            return [(r, "failed", {"error": "no phone in the roster"}) for r, _ in items]
        phone = person.phone
        pager = self.pager
        body = sms_text(
            [self._page_item(t, StepKind(r.step)) for r, t in items], digest=bundle.is_digest
        )
        try:
            if phone in self._unreachable:
                raise RecipientUnreachable("phone marked unreachable (STOP)")
            sid = await self._retry("Twilio SMS", lambda: pager.send_sms(phone, body))
        except RecipientUnreachable as exc:
            if phone not in self._unreachable:
                await self._phone_unreachable(person, phone, exc, items[0][0].task_id)
            results: list[tuple[DeliveryRow, str, dict[str, Any]]] = []
            for row, tracked in items:
                order = sms_order(self.assignee(tracked), self.people())
                nxt = await self._fallback(tracked, StepKind(row.step), "sms", order)
                results.append(
                    (
                        row,
                        "unreachable",
                        {
                            "error": str(exc),
                            "phone": phone,
                            "note": f"next on-call: {nxt or 'nobody left'}",
                        },
                    )
                )
            return results
        except DeliveryError as exc:
            return [(r, "failed", {"error": str(exc), "phone": phone}) for r, _ in items]
        return [(r, "sent", {"sid": sid, "phone": phone, "via": "SMS"}) for r, _ in items]

    # ------------------------------------------------------------------ helpers
    async def _retry(self, what: str, action: Callable[[], Awaitable[T]]) -> T:
        """Run ``action``; retry retryable :class:`DeliveryError` with backoff, then raise."""
        delays = (*self.retry_delays, None)
        for attempt, delay in enumerate(delays, start=1):
            try:
                return await action()
            except DeliveryError as exc:
                if not exc.retryable or delay is None:
                    raise
                wait = max(delay, exc.retry_after or 0.0)
                log.warning(
                    "%s failed (attempt %d): %s; retrying in %.1fs", what, attempt, exc, wait
                )
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _audit(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        try:
            await self.bridge.store.audit(
                actor_name=ESCALATION_ACTOR.name,
                via=ESCALATION_ACTOR.via,
                action=action,
                outcome=outcome,
                task_id=task_id,
                detail=detail[:2000],
            )
        except Exception:
            log.exception("could not audit %s for task %s", action, task_id)
