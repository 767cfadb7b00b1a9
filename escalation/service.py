"""The escalation ladder as a service: one wake-up of one task, through ports only.

:class:`LadderService` takes the ladder's steps exactly once (contract Appendix B,
"Exactly once across restarts"). Timers are only wake-up calls; on a wake-up for a task
(:meth:`LadderService.on_wake`; the caller holds the task's lock):

1. load the task (:class:`~escalation.ports.TaskReader`): decided → cancel whatever is still
   pending, stop;
2. load its steps (:class:`~escalation.ports.LadderRepository`): a step left ``claimed`` by a
   crash is **resumed**; otherwise :func:`escalation.ladder.due_now` says which step is due —
   the first one is taken (one step per wake-up; when more are due, the next wake-up is
   immediate); the task's schedule is memoised per state (:mod:`escalation.progress`); a
   step due inside quiet hours that the schedule planned before them waits for their end
   (:mod:`escalation.late_hold`);
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
    :data:`~escalation.deliveries.IDEMPOTENT_CHANNELS`), which carry an Idempotency-Key and
    are simply sent again (:meth:`LadderService.recover`, :mod:`escalation.startup`). A step
    found ``claimed`` is resumed: its deliveries that never started are done now, late —
    also when its task was decided meanwhile (the safe default it had just sent, a person
    while the bridge was down): the decision then cancels what is left but the incident
    report, and a safe default the factory recorded before the crash shows as ``sent``.
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
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from escalation.deliveries import (
    BUNDLED_CHANNELS,
    escalate_levels,
    level_of,
    plan_deliveries,
    reported_level,
)
from escalation.executor import (
    ACTOR_NAME,
    ACTOR_VIA,
    RETRY_DELAYS,
    DeliveryExecutor,
    step_outcome,
    with_retries,
)
from escalation.ladder import StepDue
from escalation.late_hold import late_hold
from escalation.notices import late_marker
from escalation.policy import LAST_INSTANT, EscalationPolicy, StepKind
from escalation.ports import (
    Alarm,
    Announcer,
    Audit,
    Clock,
    Decider,
    LadderRepository,
    LadderStepRow,
    LadderTask,
    Pager,
    Roster,
    TaskReader,
)
from escalation.progress import StepPlans, kept_rows
from escalation.startup import rebuild_wakes, settle_claimed

__all__ = [
    "ACTOR_NAME",
    "ACTOR_VIA",
    "RETRY_DELAYS",
    "STEP_VALUES",
    "LadderService",
    "with_retries",
]

log = logging.getLogger(__name__)

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
        self._plans = StepPlans(policy)
        # tasks whose state changed (ack, snooze, decision) while a step was being taken
        self._changed: set[str] = set()
        self._interrupted: set[str] = set()  # tasks whose step a crash interrupted (recover)

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
        if task.is_decided:
            return None
        return self._plans.next(task, taken, self.policy)

    def mark_changed(self, task_id: str) -> None:
        """Ack, snooze or decision: a step under way must read the task afresh at its end."""
        self._changed.add(task_id)

    # ------------------------------------------------------------------ start
    async def recover(self) -> None:
        """Settle what a crash left ``claimed`` (:func:`escalation.startup.settle_claimed`)
        and load the unreachable phones."""
        self._interrupted = await settle_claimed(self.repository, self.clock(), self.audit)
        # a crash between two deliveries leaves the step claimed with none of them claimed
        self._interrupted |= await self.repository.claimed_step_tasks()
        self.executor.unreachable = await self.repository.unreachable()

    async def rebuild(
        self, on_page: Callable[[dict[str, datetime]], None] | None = None
    ) -> dict[str, datetime]:
        """Every open task's next wake-up from the store (in bulk): task id → when; the
        :attr:`history` is refreshed on the way. See :func:`escalation.startup.rebuild_wakes`
        (``on_page`` gets each page's wake-ups as soon as they are known)."""
        wakes = await rebuild_wakes(
            tasks=self.tasks,
            repository=self.repository,
            policy=self.policy,
            history=self.history,
            now=self.clock(),
            on_page=on_page,
        )
        # a step a crash interrupted wakes now even when its task was decided meanwhile (the
        # safe default it sent, a person): it is finished, and its incident report posted
        late = {i: self.clock() for i in self._interrupted if i not in wakes}
        self._interrupted = set()
        if late:
            wakes.update(late)
            if on_page is not None:
                on_page(late)
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
        rows = (await self.repository.steps([task_id])).get(task_id, [])
        if task.is_decided:
            unfinished = next((r for r in rows if r.status == "claimed"), None)
            if unfinished is not None:  # decided while a crash held the step: finish it
                # (stop_reason cancels what is left but the incident report)
                late = max(0.0, (self.clock() - unfinished.due_at).total_seconds())
                await self.executor.run_step(task, StepKind(unfinished.step), late)
            await self._stop(task)
            return None
        kept = self.history[task_id] = kept_rows(rows, self.history.get(task_id, ()))
        unfinished = next((r for r in rows if r.status == "claimed"), None)
        if unfinished is not None:  # claimed before a crash: resume it (late)
            claimed()
            late = max(0.0, (self.clock() - unfinished.due_at).total_seconds())
            await self.executor.run_step(task, StepKind(unfinished.step), late)
            claimed()
            return await self._reread(task_id, refresh=True)
        # escalation.ladder.due_now's first step, from the task's memoised schedule
        due, quiet_until = self._due(task, rows, now)
        if due is None:
            claimed()
            if task_id in self._changed:
                return await self._reread(task_id, refresh=False)
            if quiet_until is not None:  # due, but waiting for the end of quiet hours
                return None if quiet_until >= LAST_INSTANT else quiet_until
            return await self._next_wake(task, kept, refresh=False)
        row, called_factory = await self._take(task, due, now, claimed)
        claimed()
        if row is None:  # another wake-up claimed it first
            return await self._reread(task_id, refresh=False)
        # nothing else wrote this task's steps (the caller holds its lock): they are the ones
        # read plus this one. The task itself is read again when the step called the factory
        # (a safe default decides it, a reassignment changes its assignee) or an ack, snooze
        # or decision came in meanwhile (mark_changed); a post, an SMS or a call changes
        # nothing of it.
        if called_factory or task_id in self._changed:
            fresh = await self.tasks.get(task_id)
            if fresh is None:
                return None
            task = fresh
        return await self._next_wake(task, [*kept, row], refresh=True)

    def _due(
        self, task: LadderTask, rows: Sequence[LadderStepRow], now: datetime
    ) -> tuple[StepDue | None, datetime | None]:
        """The step to take now (:meth:`StepPlans.due`), and when quiet hours end if steps
        are due but wait for that: a step planned before quiet hours and due inside them
        (downtime, a storm, a raised priority) waits like those the schedule holds
        (:mod:`escalation.late_hold`); a later step due that does not wait (a page of a
        bypass priority) goes now, and supersedes them."""
        waiting: set[StepKind] = set()
        quiet_until: datetime | None = None
        priority = task.task.priority
        while (due := self._plans.due(task, rows, self.policy, now, waiting)) is not None:
            until, step = late_hold(due, priority, self.policy, now)
            if until is None:
                return step, None
            waiting.add(due.kind)
            quiet_until = until
        if quiet_until is not None:
            # a later step that does not wait (a bypass page, the critical step of a bypass
            # priority) may come due before quiet hours end: wake for it then
            later = self._plans.next(task, rows, self.policy, waiting)
            if later is not None and later.deliver_at < quiet_until:
                quiet_until = max(later.deliver_at, now)
        return None, quiet_until

    async def _take(
        self,
        task: LadderTask,
        step: StepDue,
        now: datetime,
        claimed: Callable[[], None],
    ) -> tuple[LadderStepRow | None, bool]:
        """Claim ``step`` with its deliveries and do it.

        Returns the step's row once done, as :func:`~escalation.progress.kept_rows` keeps it
        (``None`` when another wake-up claimed it first:
        the unique ``(task, step)`` key) and whether its deliveries called the factory
        (reassign, safe default, escalate: the task may have changed).
        """
        task_id = task.task_id
        kind = step.kind
        name = kind._value_  # the stored name (``.value`` is a property call)
        late = step.late_by_seconds(now)
        planned = plan_deliveries(
            step,
            people=self.roster.people(),
            assignee=self.roster.assignee(task),
            unreachable=self.unreachable,
            safe_default=self.policy.safe_default,
            escalate=(
                await self._levels_to_report(task, kind) if task.approval_id is not None else ()
            ),
        )
        # a step whose deliveries are all the bundler's has no side effect of its own: it is
        # written done in its claim (one write per reminder, not two)
        bundled = [(d.recipient, d.channel) for d in planned if d.channel in BUNDLED_CHANNELS]
        own = len(bundled) < len(planned)
        done_outcome = None if own else step_outcome(late, planned)
        won = await self.repository.claim_step(
            task_id,
            name,
            due_at=step.deliver_at,
            now=now,
            deliveries=planned,
            audit={
                "actor_name": ACTOR_NAME,
                "via": ACTOR_VIA,
                "action": f"escalation.{name}",
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
            self._step_taken(name, task.task.priority.value, late)
        if bundled:
            self.new_bundle_keys.update(bundled)
        called = False
        if done_outcome is None:
            executor = self.executor
            factory_calls = executor.factory_calls
            done_outcome = await executor.run_step(task, kind, late)
            called = executor.factory_calls != factory_calls
        # the row as kept_rows keeps it (the outcome only when it reported a level): built
        # once, not built and then rebuilt without its outcome
        kept = done_outcome if reported_level(done_outcome) is not None else {}
        return LadderStepRow(task_id, name, step.deliver_at, now, late, "done", kept), called

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
        return await self._next_wake(task, kept_rows(rows), refresh=refresh)

    async def _next_wake(
        self, task: LadderTask, kept: list[LadderStepRow], *, refresh: bool
    ) -> datetime | None:
        """The next wake-up of ``task`` whose step rows (as :func:`~escalation.progress.kept_rows` keeps them) are
        ``kept``; they become its :attr:`history`."""
        self.history[task.task_id] = kept
        if refresh:
            self.announcer.refresh(task.task_id)
        if task.is_decided:
            await self._stop(task)
            return None
        nxt = self._plans.next(task, kept, self.policy)
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


#: A step's due time as the claim's audit writes it: most tasks share their few due times
#: (created together, one schedule per priority), and isoformat costs more than a lookup.
_isoformat: Callable[[datetime], str] = lru_cache(maxsize=4096)(datetime.isoformat)


def _nothing() -> None:
    return None
