"""Where a task's ladder stands: its step rows as the service keeps them, and the steps left.

:class:`~escalation.service.LadderService` asks this on every wake-up of every task: which
step is due now (:meth:`StepPlans.due`), when the next one is (:meth:`StepPlans.next`), and
what of the task's step rows the task message shows (:func:`kept_rows`). The answers are
those of :func:`escalation.ladder.due_now` and :func:`escalation.ladder.next_step`, computed
the cheap way:

* a task's schedule depends on its state only through the steps taken, and only through the
  highest of them (:func:`escalation.ladder.schedule` drops every step at or below the
  highest rank taken, and nothing else depends on them); so the schedule of the task with
  **no** step taken is worked out once per ``(T, D, priority, acknowledged, snoozed)`` and
  each wake-up keeps what ranks above its highest step taken — no
  :class:`~escalation.ladder.LadderState` is built and hashed per wake-up;
* those schedules are memoised in a plain dictionary keyed by values that hash in C
  (datetimes, the priority), bounded (:data:`MAX_PLANS`), one per policy;
* except once the highest step taken is a call (the critical step or a repeat): the repeats
  after it are counted from when it actually went out, its row's ``taken_at``
  (:attr:`~escalation.ladder.LadderState.paged_at`), so that task's steps left are asked
  of :func:`~escalation.ladder.schedule` itself (memoised there);
* of several repeats due at once only the last is taken (the others are superseded), and
  none while the critical step is due, as :func:`~escalation.ladder.due_now` says.

Nothing here reads a clock or does I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime

from escalation.deliveries import reported_level
from escalation.ladder import LadderState, StepDue, schedule
from escalation.models import Priority
from escalation.policy import EscalationPolicy, StepKind, as_aware_utc
from escalation.ports import LadderStepRow, LadderTask

__all__ = [
    "MAX_PLANS",
    "STEP_KINDS",
    "StepPlans",
    "highest_rank",
    "kept_rows",
    "last_taken",
    "progress",
]

#: At most this many schedules are memoised (then the memo starts afresh): one per distinct
#: ``(T, D, priority, acknowledged, snoozed)``, i.e. per task. What it saves is a wake-up's
#: planning twice in a row and a task's few wake-ups close together, so it holds the tasks
#: woken recently, not every open task: at 16,384 it (and ``escalation.ladder._schedule``)
#: kept the schedules of the last 16,000 tasks, decided or not, the only objects bench
#: ``memory`` saw grow from cycle to cycle; 4,096 measured no slower (``ladder_core``).
MAX_PLANS = 4_096

#: Step kinds by stored name (an enum lookup by value costs a call per row).
STEP_KINDS: dict[str, StepKind] = {k.value: k for k in StepKind}

#: The ladder rank of each step by stored name (rows of other names are not ladder steps).
_RANK_OF: dict[str, int] = {k.value: k.rank for k in StepKind}

#: A schedule as memoised: ``(rank, step)`` in delivery order (ties in ladder order).
_Plan = tuple[tuple[int, StepDue], ...]

#: A task's memoised schedules: index ``taken + 1`` holds the steps ranked above ``taken``
#: (the highest rank of the steps taken, ``-1`` for none, below the critical step's), built
#: when first asked (a task is planned twice per wake-up, at the same ``taken``).
_Plans = list[_Plan | None]

#: The rank of the critical step: a step taken at or above it is a call (critical, repeats).
_CALL_RANK = StepKind.CRITICAL.rank


def highest_rank(rows: Sequence[LadderStepRow]) -> int:
    """The highest ladder rank among the steps of ``rows`` (``-1`` for none)."""
    best = -1
    rank_of = _RANK_OF
    for r in rows:
        rank = rank_of.get(r.step, -1)
        if rank > best:
            best = rank
    return best


def last_taken(rows: Sequence[LadderStepRow]) -> LadderStepRow | None:
    """The row of the highest-ranked ladder step among ``rows`` (``None`` for none): its
    ``taken_at`` is :attr:`~escalation.ladder.LadderState.paged_at` when it is a call."""
    best: LadderStepRow | None = None
    best_rank = -1
    rank_of = _RANK_OF
    for r in rows:
        rank = rank_of.get(r.step, -1)
        if rank > best_rank:
            best, best_rank = r, rank
    return best


class StepPlans:
    """The steps left of each task, memoised per task state (see the module docstring).

    Parameters
    ----------
    policy
        The escalation policy the schedules follow.
    max_plans
        Memo bound (:data:`MAX_PLANS`).
    """

    def __init__(self, policy: EscalationPolicy, *, max_plans: int = MAX_PLANS) -> None:
        self.policy = policy
        self._max = max_plans
        self._plans: dict[tuple[object, ...], _Plans] = {}

    def _plan(self, task: LadderTask, policy: EscalationPolicy, taken: int = -1) -> _Plan:
        """The schedule of ``task`` once the steps up to rank ``taken`` (below the critical
        step's; ``-1``: none) are taken, as ``(rank, step)`` pairs.

        Raises
        ------
        ValueError
            On a naive datetime.
        """
        if policy is not self.policy:  # the service's policy was replaced: start afresh
            self.policy = policy
            self._plans = {}
        inner = task.task
        created_at = inner.created_at
        deadline = task.deadline
        priority = inner.priority
        acknowledged_at = task.acknowledged_at
        snoozed_until = task.snoozed_until
        key = (created_at, deadline, priority, acknowledged_at, snoozed_until)
        plans = self._plans.get(key)
        if plans is None:
            steps = schedule(
                created_at,
                deadline,
                Priority(priority),
                policy,
                LadderState(False, acknowledged_at, snoozed_until),
            )
            plans = [tuple([(s.kind.rank, s) for s in steps]), *[None] * _CALL_RANK]
            if len(self._plans) >= self._max:
                self._plans = {}
            self._plans[key] = plans
        plan = plans[taken + 1]
        if plan is None:
            full = plans[0]
            assert full is not None  # built with the entry
            plan = plans[taken + 1] = tuple([p for p in full if p[0] > taken])
        return plan

    def _left(
        self, task: LadderTask, rows: Sequence[LadderStepRow], policy: EscalationPolicy
    ) -> Iterable[tuple[int, StepDue]]:
        """The steps left of ``task`` whose step rows are ``rows``, as ``(rank, step)`` in
        delivery order (see the module docstring)."""
        last = last_taken(rows)
        if last is None or _RANK_OF[last.step] < _CALL_RANK:
            return self._plan(task, policy, -1 if last is None else _RANK_OF[last.step])
        inner = task.task
        steps = schedule(
            inner.created_at,
            task.deadline,
            Priority(inner.priority),
            policy,
            LadderState(
                False,
                task.acknowledged_at,
                task.snoozed_until,
                frozenset({STEP_KINDS[last.step]}),
                last.taken_at,
            ),
        )
        return [(s.kind.rank, s) for s in steps]

    def next(
        self,
        task: LadderTask,
        rows: Sequence[LadderStepRow],
        policy: EscalationPolicy,
        leave_out: Collection[StepKind] = (),
    ) -> StepDue | None:
        """:func:`escalation.ladder.next_step` of the undecided ``task`` whose step rows are
        ``rows``: the first step left, or ``None``. ``leave_out``: steps not to consider (as
        for :meth:`due`).

        Raises
        ------
        ValueError
            On a naive datetime.
        """
        for _, step in self._left(task, rows, policy):
            if step.kind not in leave_out:
                return step
        return None

    def due(
        self,
        task: LadderTask,
        rows: Sequence[LadderStepRow],
        policy: EscalationPolicy,
        now: datetime,
        leave_out: Collection[StepKind] = (),
    ) -> StepDue | None:
        """The first step (in ladder order) of :func:`escalation.ladder.due_now` for the
        undecided ``task`` at ``now``, or ``None`` when none is due: when that is a repeat,
        the last repeat due (it supersedes the others: one page, not one per repeat missed).
        ``leave_out``: steps not to consider (due, but waiting for the end of quiet hours:
        :mod:`escalation.late_hold`).

        Raises
        ------
        ValueError
            On a naive datetime.
        """
        instant = as_aware_utc(now, "now")
        first: tuple[int, StepDue] | None = None
        last: tuple[int, StepDue] | None = None
        for rank, step in self._left(task, rows, policy):
            if step.deliver_at <= instant and step.kind not in leave_out:
                if first is None or rank < first[0]:
                    first = (rank, step)
                if last is None or rank > last[0]:
                    last = (rank, step)
        if first is None or last is None:
            return None
        return last[1] if first[1].kind.repeat_number else first[1]


def kept_rows(
    rows: Sequence[LadderStepRow], previous: Sequence[LadderStepRow] = ()
) -> list[LadderStepRow]:
    """The rows as :attr:`escalation.service.LadderService.history` keeps them: an outcome
    that reported no escalation level to the factory is left out (the task message shows only
    that level, and the rows of every open task stay in memory). The store keeps every
    outcome.

    ``previous`` is what the history held for the task: a step row ``done`` there and here
    (taken at the same instant) is final, so its kept form is reused rather than rebuilt on
    every wake-up.
    """
    kept = []
    n = len(previous)
    for i, r in enumerate(rows):
        if i < n:
            p = previous[i]
            if p.status == "done" == r.status and p.step == r.step and p.taken_at == r.taken_at:
                kept.append(p)
                continue
        if r.outcome and reported_level(r.outcome) is None:
            # built directly: dataclasses.replace re-checks every field, on every wake-up
            r = LadderStepRow(r.task_id, r.step, r.due_at, r.taken_at, r.late_seconds, r.status, {})
        kept.append(r)
    return kept


def progress(rows: Sequence[LadderStepRow]) -> tuple[int, int]:
    """How far a task's step rows are along: rows are only added, ``claimed`` → ``done``."""
    return len(rows), sum(1 for r in rows if r.status == "done")
