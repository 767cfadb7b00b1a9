"""The escalation ladder as a service: one wake-up of one task, through ports only.

:class:`LadderService` takes the ladder's steps exactly once (contract Appendix B,
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
    report says so — except factory calls (reassign, escalation level, safe default:
    :data:`~escalation.deliveries.IDEMPOTENT_CHANNELS`), which carry an Idempotency-Key and are simply sent again (:meth:`LadderService.recover`). A step found
    ``claimed`` is resumed: its deliveries that never started are done now, late.
Retries
    A retryable :class:`~escalation.ports.DeliveryError` (Discord 5xx/429, Twilio 5xx/429,
    network) is retried after each of :data:`RETRY_DELAYS` (``Retry-After`` honoured when
    longer); then the delivery is ``failed``. The sleep is injected (tests never wait).
Escalation level
    For a task with an approval, each step also tells the factory the level it reached
    (``escalate`` deliveries, :data:`escalation.deliveries.ESCALATION_LEVELS`, contract
    Appendix B), once per level and in order.
Fallbacks
    Twilio 21610 → the phone is persisted as unreachable, audited, and the next on-call
    operator gets the page. Without a pager, SMS and calls are recorded as ``skipped``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from escalation.deliveries import (
    BUNDLED_CHANNELS,
    IDEMPOTENT_CHANNELS,
    escalate_levels,
    level_of,
    plan_deliveries,
    reported_level,
)
from escalation.executor import RETRY_DELAYS, DeliveryExecutor, step_outcome, with_retries
from escalation.ladder import LadderState, StepDue, due_now, next_step
from escalation.notices import late_marker
from escalation.policy import EscalationPolicy, StepKind
from escalation.ports import (
    Alarm,
    Announcer,
    Audit,
    Clock,
    Decider,
    LadderRepository,
    LadderStepRow,
    LadderTask,
    OpenTaskClock,
    Pager,
    Roster,
    TaskReader,
)

__all__ = [
    "ACTOR_NAME",
    "ACTOR_VIA",
    "RETRY_DELAYS",
    "STEP_VALUES",
    "LadderService",
    "with_retries",
]

log = logging.getLogger(__name__)

#: The audit actor of everything the ladder does (name and ``via``).
ACTOR_NAME = "escalation"
ACTOR_VIA = "system"

#: Stored step names that are ladder steps.
STEP_VALUES = frozenset(k.value for k in StepKind)

#: A failed wake-up is tried again this much later.
RETRY_WAKE = timedelta(seconds=5)


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
    step_taken
        Called with ``(step, priority, late_seconds)`` each time this process claims a step
        (metrics); must not raise or block. Optional.

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
        step_taken: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.policy = policy
        self._step_taken = step_taken
        self.repository = repository
        self.tasks = tasks
        self.roster = roster
        self.announcer = announcer
        self.alarm = alarm
        self.clock = clock
        self.executor = DeliveryExecutor(
            policy=policy,
            repository=repository,
            tasks=tasks,
            roster=roster,
            announcer=announcer,
            pager=pager,
            decider=decider,
            audit=audit,
            clock=clock,
            retry_delays=retry_delays,
            sleep=sleep,
        )
        self.history: dict[str, list[LadderStepRow]] = {}
        # tasks whose state changed (ack, snooze, decision) while a step was being taken
        self._changed: set[str] = set()

    # ------------------------------------------------------------------ reading
    @property
    def unreachable(self) -> set[str]:
        """Phones marked unreachable (Twilio 21610)."""
        return self.executor.unreachable

    @property
    def new_bundle_keys(self) -> set[tuple[str, str]]:
        """``(person, channel)`` pairs with a new pending DM or SMS (the bundler takes them)."""
        return self.executor.new_bundle_keys

    async def audit(self, task_id: str, action: str, outcome: str, detail: str) -> None:
        """Audit through the port (never raises; see :meth:`DeliveryExecutor.audit`)."""
        await self.executor.audit(task_id, action, outcome, detail)

    def take_bundle_keys(self) -> set[tuple[str, str]]:
        """The :attr:`new_bundle_keys` so far, emptied."""
        keys, self.executor.new_bundle_keys = self.executor.new_bundle_keys, set()
        return keys

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
            outcome = "retry" if row.channel in IDEMPOTENT_CHANNELS else "unknown"
            await self.audit(
                row.task_id,
                f"escalation.{row.channel}",
                outcome,
                f"{row.step}: interrupted by a restart while sending to {row.recipient}; "
                + ("sent again (idempotent)" if outcome == "retry" else "not repeated"),
            )
        self.executor.unreachable = await self.repository.unreachable()

    async def rebuild(
        self, on_page: Callable[[dict[str, datetime]], None] | None = None
    ) -> dict[str, datetime]:
        """Every open task's next wake-up from the store (in bulk): task id → when.

        A task with a ``claimed`` step wakes now (to resume it); a task with no step left
        has none. The tasks are read a page at a time, as :class:`~escalation.ports.OpenTaskClock`
        when the :class:`TaskReader` offers ``open_task_clocks()`` (only what the schedule
        reads), else from ``open_task_pages()`` or ``open_tasks()``: 100,000 open tasks are
        never all in memory at once (bench/ladders.py). Yields to the event loop every 500
        tasks (a big backlog at start); ``on_page`` gets each page's wake-ups as soon as they
        are known, so the caller can arm them before the last page is read (bench/arm.py).

        Wake-ups may be taken while this runs (the caller's worker): a task's step rows read
        here replace its :attr:`history` only when they are at least as far along as what a
        wake-up wrote meanwhile (rows are only ever added, and go from ``claimed`` to
        ``done``).
        """
        now = self.clock()
        policy = self.policy
        wakes: dict[str, datetime] = {}
        gone = set(self.history)  # tasks no longer open lose their history at the end
        index = 0
        async for page in self._open_task_clocks():
            steps = await self.repository.steps([c.task_id for c in page])
            page_wakes: dict[str, datetime] = {}
            for clock in page:
                index += 1
                if index % 500 == 0:
                    await asyncio.sleep(0)
                task_id = clock.task_id
                rows = steps.get(task_id, ())
                if rows and any(r.status == "claimed" for r in rows):
                    page_wakes[task_id] = now
                    continue
                try:
                    nxt = next_step(
                        clock.created_at,
                        clock.deadline,
                        clock.priority,
                        policy,
                        LadderState(
                            False,
                            clock.acknowledged_at,
                            clock.snoozed_until,
                            frozenset([_STEP_KINDS[r.step] for r in rows if r.step in _STEP_KINDS])
                            if rows
                            else _NO_STEPS,
                        ),
                    )
                except ValueError:
                    continue
                if nxt is not None:
                    page_wakes[task_id] = nxt.deliver_at
            history = self.history
            for task_id, rows in steps.items():
                kept = _kept(rows)
                current = history.get(task_id)
                if current is None or _progress(kept) >= _progress(current):
                    history[task_id] = kept
            gone.difference_update(c.task_id for c in page)
            wakes.update(page_wakes)
            if on_page is not None:
                on_page(page_wakes)
        for task_id in gone:
            self.history.pop(task_id, None)
        return wakes

    async def _open_task_clocks(self) -> AsyncIterator[Sequence[OpenTaskClock]]:
        clocks = getattr(self.tasks, "open_task_clocks", None)
        if clocks is not None:
            async for page in clocks():
                yield page
            return
        pages = getattr(self.tasks, "open_task_pages", None)
        if pages is None:
            yield _clocks(await self.tasks.open_tasks())
            return
        async for tasks in pages():
            yield _clocks(tasks)

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
        kept = self.history[task_id] = _kept(rows, self.history.get(task_id, ()))
        unfinished = next((r for r in rows if r.status == "claimed"), None)
        if unfinished is not None:  # claimed before a crash: resume it (late)
            claimed()
            late = max(0.0, (self.clock() - unfinished.due_at).total_seconds())
            await self.executor.run_step(task, StepKind(unfinished.step), late)
            claimed()
            return await self._reread(task_id, refresh=True)
        due = due_now(
            task.task.created_at,
            task.deadline,
            task.task.priority,
            self.policy,
            _state(task, rows),
            now,
        )
        if not due:
            claimed()
            if task_id in self._changed:
                return await self._reread(task_id, refresh=False)
            return await self._next_wake(task, kept, refresh=False)
        row, ran = await self._take(task, due[0], now, claimed)
        claimed()
        if row is None:  # another wake-up claimed it first
            return await self._reread(task_id, refresh=False)
        # nothing else wrote this task's steps (the caller holds its lock): they are the ones
        # read plus this one. The task itself is read again when the step's deliveries may
        # have changed it (a safe default decides it) or an ack, snooze or decision came in
        # meanwhile (mark_changed).
        if ran or task_id in self._changed:
            fresh = await self.tasks.get(task_id)
            if fresh is None:
                return None
            task = fresh
        return await self._next_wake(task, [*kept, *_kept([row])], refresh=True)

    async def _take(
        self,
        task: LadderTask,
        step: StepDue,
        now: datetime,
        claimed: Callable[[], None],
    ) -> tuple[LadderStepRow | None, bool]:
        """Claim ``step`` with its deliveries and do it.

        Returns the step's row once done (``None`` when another wake-up claimed it first:
        the unique ``(task, step)`` key) and whether its own deliveries were done here (a
        step whose deliveries are all the bundler's is finished by its claim alone).
        """
        task_id = task.task_id
        late = step.late_by_seconds(now)
        planned = plan_deliveries(
            step,
            people=self.roster.people(),
            assignee=self.roster.assignee(task),
            unreachable=self.unreachable,
            safe_default=self.policy.safe_default,
            escalate=(
                await self._levels_to_report(task, step.kind)
                if task.approval_id is not None
                else ()
            ),
        )
        # a step whose deliveries are all the bundler's has no side effect of its own: it is
        # written done in its claim (one write per reminder, not two)
        own = any(d.channel not in BUNDLED_CHANNELS for d in planned)
        done_outcome = None if own else step_outcome(late, planned)
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
                    f"due {_isoformat(step.deliver_at)}{late_marker(late)}; "
                    + (", ".join([f"{d.channel}→{d.recipient}" for d in planned]) or "nobody")
                )[:2000],
            },
            done_outcome=done_outcome,
        )
        claimed()
        if not won:
            return None, False
        if self._step_taken is not None:
            self._step_taken(step.kind.value, task.task.priority.value, late)
        self.new_bundle_keys.update(
            (d.recipient, d.channel) for d in planned if d.channel in BUNDLED_CHANNELS
        )
        if done_outcome is None:
            done_outcome = await self.executor.run_step(task, step.kind, late)
        row = LadderStepRow(
            task_id, step.kind.value, step.deliver_at, now, late, "done", done_outcome
        )
        return row, own

    async def _levels_to_report(self, task: LadderTask, kind: StepKind) -> list[int]:
        """The escalation levels ``kind`` reports to the factory (none without an approval):
        see :func:`escalation.deliveries.escalate_levels`."""
        if task.approval_id is None:
            return []
        rows = await self.repository.deliveries(task_id=task.task_id, channels=["escalate"])
        reported = {
            level_of(r.recipient) for r in rows if r.status in ("pending", "claimed", "sent")
        }
        closed = any(r.status == "skipped" for r in rows)
        return escalate_levels(kind, {n for n in reported if n is not None}, closed=closed)

    async def _reread(self, task_id: str, *, refresh: bool) -> datetime | None:
        """The task's next wake-up from its state read afresh."""
        task = await self.tasks.get(task_id)
        if task is None:
            return None
        rows = (await self.repository.steps([task_id])).get(task_id, [])
        return await self._next_wake(task, _kept(rows), refresh=refresh)

    async def _next_wake(
        self, task: LadderTask, kept: list[LadderStepRow], *, refresh: bool
    ) -> datetime | None:
        """The next wake-up of ``task`` whose step rows (as :func:`_kept` keeps them) are
        ``kept``; they become its :attr:`history`."""
        self.history[task.task_id] = kept
        if refresh:
            self.announcer.refresh(task.task_id)
        if task.is_decided:
            await self._stop(task)
            return None
        nxt = next_step(
            task.task.created_at,
            task.deadline,
            task.task.priority,
            self.policy,
            _state(task, kept),
        )
        if nxt is None:
            return None
        return max(nxt.deliver_at, self.clock()) if refresh else nxt.deliver_at

    async def _stop(self, task: LadderTask) -> None:
        """A decision stops everything still pending (rule: "Only a decision stops")."""
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


def _kept(rows: list[LadderStepRow], previous: Sequence[LadderStepRow] = ()) -> list[LadderStepRow]:
    """The rows as :attr:`LadderService.history` keeps them: an outcome that reported no
    escalation level to the factory is left out (the task message shows only that level, and
    the rows of every open task stay in memory). The store keeps every outcome.

    ``previous`` is what the history held for the task: a step row ``done`` there and here
    (taken at the same instant) is final, so its kept form is reused rather than rebuilt on
    every wake-up.
    """
    kept = []
    for i, r in enumerate(rows):
        if i < len(previous):
            p = previous[i]
            if p.status == "done" == r.status and p.step == r.step and p.taken_at == r.taken_at:
                kept.append(p)
                continue
        if r.outcome and reported_level(r.outcome) is None:
            # built directly: dataclasses.replace re-checks every field, on every wake-up
            r = LadderStepRow(r.task_id, r.step, r.due_at, r.taken_at, r.late_seconds, r.status, {})
        kept.append(r)
    return kept


#: A step's due time as the claim's audit writes it: most tasks share their few due times
#: (created together, one schedule per priority), and isoformat costs more than a lookup.
_isoformat: Callable[[datetime], str] = lru_cache(maxsize=4096)(datetime.isoformat)


def _nothing() -> None:
    return None


#: Step kinds by stored name (an enum lookup by value costs a call per row, on every wake-up).
_STEP_KINDS: dict[str, StepKind] = {k.value: k for k in StepKind}


_NO_STEPS: frozenset[StepKind] = frozenset()


def _clocks(tasks: Iterable[LadderTask]) -> list[OpenTaskClock]:
    """What the rebuild reads of each undecided task."""
    return [
        OpenTaskClock(
            t.task_id,
            t.task.created_at,
            t.deadline,
            t.task.priority,
            t.acknowledged_at,
            t.snoozed_until,
        )
        for t in tasks
        if not t.is_decided
    ]


def _progress(rows: Sequence[LadderStepRow]) -> tuple[int, int]:
    """How far a task's step rows are along: rows are only added, ``claimed`` → ``done``."""
    return len(rows), sum(1 for r in rows if r.status == "done")


def _state(task: LadderTask, rows: Iterable[LadderStepRow]) -> LadderState:
    return LadderState(
        decided=task.is_decided,
        acknowledged_at=task.acknowledged_at,
        snoozed_until=task.snoozed_until,
        taken=frozenset([_STEP_KINDS[r.step] for r in rows if r.step in _STEP_KINDS]),
    )
