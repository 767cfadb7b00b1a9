"""StepPlans (escalation.progress) answers as escalation.ladder's due_now and next_step do.

The service asks :class:`~escalation.progress.StepPlans` on every wake-up instead of building
a :class:`~escalation.ladder.LadderState` for :func:`~escalation.ladder.due_now` and
:func:`~escalation.ladder.next_step`; these tests walk many task states (priorities, quiet
hours, repeats, acknowledgements, snoozes, any set of steps taken, many instants) and compare.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from escalation.ladder import ALL_STEPS, LadderState, due_now, next_step
from escalation.models import Priority, Task
from escalation.policy import EscalationPolicy, QuietHours
from escalation.ports import LadderStepRow
from escalation.progress import StepPlans, highest_rank
from tests.support.ladder_fakes import FakeTask

START = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)  # quiet hours (22:00–08:00) come soon

POLICIES = [
    EscalationPolicy(quiet_hours=None),
    EscalationPolicy(repeat_limit=3),
    EscalationPolicy(
        quiet_hours=QuietHours("21:00", "07:00", "Europe/Berlin"),
        repeat_limit=2,
        quiet_bypass_priorities=frozenset(),
    ),
]


def rows_of(task_id: str, taken: tuple[int, ...]) -> list[LadderStepRow]:
    return [
        LadderStepRow(task_id, ALL_STEPS[i].value, START, START, 0.0, "done", {}) for i in taken
    ]


def tasks() -> list[FakeTask]:
    found = []
    for n, (priority, ack, snooze) in enumerate(
        itertools.product(
            Priority,
            (None, START + timedelta(minutes=20)),
            (None, START + timedelta(hours=3)),
        )
    ):
        task = Task(id=f"t{n}", title="T", priority=priority, created_at=START)
        deadline = START + timedelta(hours=(1, 4, 24, 72)[list(Priority).index(priority)])
        found.append(FakeTask(task, deadline, acknowledged_at=ack, snoozed_until=snooze))
    return found


@pytest.mark.parametrize("policy", POLICIES, ids=["no-quiet", "repeats", "berlin-no-bypass"])
def test_due_and_next_are_those_of_the_ladder(policy: EscalationPolicy) -> None:
    plans = StepPlans(policy)
    subsets = [(), (0,), (0, 1), (1, 3), (0, 1, 2, 3), (4,), (2, 5), (0, 1, 2, 3, 4, 5, 6)]
    instants = [START + timedelta(minutes=m) for m in range(0, 5 * 24 * 60, 97)]
    checked = 0
    for task in tasks():
        for taken in subsets:
            rows = rows_of(task.task_id, taken)
            state = LadderState(
                False,
                task.acknowledged_at,
                task.snoozed_until,
                frozenset(ALL_STEPS[i] for i in taken),
            )
            args = (task.task.created_at, task.deadline, task.task.priority, policy, state)
            assert plans.next(task, rows, policy) == next_step(*args)
            for now in instants:
                due = due_now(*args, now)
                assert plans.due(task, rows, policy, now) == (due[0] if due else None)
                checked += 1
    assert checked > 9_000


def test_a_replaced_policy_is_planned_afresh_and_the_memo_is_bounded() -> None:
    first, second = (
        EscalationPolicy(quiet_hours=None),
        EscalationPolicy(quiet_hours=None, dm_after_seconds=60),
    )
    plans = StepPlans(first, max_plans=2)
    task = tasks()[0]
    assert plans.next(task, [], first).deliver_at == START + timedelta(minutes=30)  # type: ignore[union-attr]
    assert plans.next(task, [], second).deliver_at == START + timedelta(minutes=1)  # type: ignore[union-attr]
    for other in tasks()[1:6]:
        plans.next(other, [], second)
    assert len(plans._plans) <= 2


def test_naive_times_are_refused_as_the_ladder_refuses_them() -> None:
    policy = EscalationPolicy(quiet_hours=None)
    task = tasks()[0]
    with pytest.raises(ValueError, match="now"):
        StepPlans(policy).due(task, [], policy, datetime(2026, 3, 2, 21, 0))
    naive = FakeTask(task.task, datetime(2026, 3, 3), acknowledged_at=None)
    with pytest.raises(ValueError, match="deadline"):
        StepPlans(policy).next(naive, [], policy)


def test_the_highest_rank_ignores_rows_that_are_not_ladder_steps() -> None:
    rows = rows_of("t", (1, 3))
    rows.append(LadderStepRow("t", "not_a_step", START, START, 0.0, "done", {}))
    assert highest_rank(rows) == ALL_STEPS[3].rank
    assert highest_rank([]) == -1
