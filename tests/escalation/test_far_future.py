"""Times at the ends of what a datetime holds never break the ladder (review, defect 1).

A ``slaDeadline`` of 9999-12-31T23:59:59Z (a common "no deadline" value) put the critical
step (D + 2 h) past year 9999: ``OverflowError`` escaped the ladder, so the task message was
never posted, a critical task's wake-up failed every 5 s for ever and the rebuild at a
leader's start raised (a crash loop on every replica). Now a step past the last instant is
simply never due, and nothing raises for any aware input (module docstring of
:mod:`escalation.ladder`, "Far future").
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from escalation.ladder import LadderState, due_now, next_step, plan, schedule
from escalation.models import Priority, Task
from escalation.policy import EscalationPolicy, QuietHours, SafeDefault, StepKind
from escalation.quiet_hours import is_quiet, next_quiet_start, quiet_end_after, quiet_window_at
from tests.support.ladder_fakes import FakeTask, make_rig

T = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday 10:00 UTC
NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)  # escalation.policy.FIRST_INSTANT
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)  # escalation.policy.LAST_INSTANT
POLICIES = {
    "quiet": EscalationPolicy(repeat_limit=3),  # 22:00-08:00 UTC
    "no-quiet": EscalationPolicy(quiet_hours=None, repeat_limit=3),
    "new-york": EscalationPolicy(
        repeat_limit=3,
        quiet_hours=QuietHours("22:00", "08:00", "America/New_York"),
        quiet_bypass_priorities=frozenset(),
    ),
    "kiritimati": EscalationPolicy(
        repeat_limit=10, quiet_hours=QuietHours("00:00", "23:00", "Pacific/Kiritimati")
    ),
}


@pytest.mark.parametrize("priority", list(Priority))
@pytest.mark.parametrize("policy", list(POLICIES.values()), ids=list(POLICIES))
def test_a_deadline_in_year_9999_leaves_the_reminders_and_breach_and_never_calls(
    policy: EscalationPolicy, priority: Priority
) -> None:
    steps = schedule(T, NEVER, priority, policy, LadderState())
    kinds = [s.kind for s in steps]
    # the breach at D itself, unless held for quiet hours past the last instant: never due
    assert set(kinds) <= {*(k for k in StepKind if k.is_reminder), StepKind.SLA_BREACH}
    bypass = priority is Priority.CRITICAL or priority in policy.quiet_bypass_priorities
    held = not bypass and is_quiet(policy.quiet_hours, NEVER)
    assert (StepKind.SLA_BREACH in kinds) is not held
    first = next_step(T, NEVER, priority, policy, LadderState())
    assert first == steps[0] and first.kind in (StepKind.REMINDER_DM, StepKind.REMINDER_MENTION)
    assert first.deliver_at < T + timedelta(days=2)  # the task message shows it
    day_after = due_now(T, NEVER, priority, policy, LadderState(), T + timedelta(days=2))
    assert day_after and all(s.kind.is_reminder for s in day_after)
    last = due_now(T, NEVER, priority, policy, LadderState(), LAST_INSTANT)
    assert [s.kind for s in last] == [s.kind for s in steps]  # due at the end of time
    assert [p.kind for p in plan(T, NEVER, policy)][-1] is StepKind.SLA_BREACH


def test_a_deadline_past_9999_once_in_utc_or_past_it_by_its_sla_is_the_last_instant() -> None:
    policy = EscalationPolicy(repeat_limit=3)
    western = datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    deadline = policy.deadline_for(T, Priority.MEDIUM, western)
    assert deadline == LAST_INSTANT
    assert next_step(T, deadline, Priority.MEDIUM, policy, LadderState()) is not None
    assert policy.deadline_for(NEVER, Priority.LOW) == LAST_INSTANT  # T + 72 h
    huge = EscalationPolicy(sla_seconds={Priority.LOW: 1e18})  # more than a timedelta holds
    assert huge.deadline_for(T, Priority.LOW) == LAST_INSTANT


EXTREMES = [
    FIRST_INSTANT,
    FIRST_INSTANT + timedelta(minutes=90),
    T,
    NEVER,
    LAST_INSTANT,
    datetime(9999, 12, 31, 20, 0, tzinfo=timezone(timedelta(hours=-3))),
    datetime(1, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=1))),
]


@pytest.mark.parametrize("policy", list(POLICIES.values()), ids=list(POLICIES))
def test_no_aware_input_makes_the_ladder_raise(policy: EscalationPolicy) -> None:
    taken_sets = [frozenset(), frozenset({StepKind.CRITICAL}), frozenset({StepKind.REPEAT_2})]
    for created, deadline, priority in itertools.product(EXTREMES, EXTREMES, Priority):
        for snooze, paged, taken in [
            (None, None, taken_sets[0]),
            (LAST_INSTANT, LAST_INSTANT, taken_sets[1]),
            (FIRST_INSTANT, NEVER, taken_sets[2]),
            (T, FIRST_INSTANT, taken_sets[1]),
        ]:
            state = LadderState(snoozed_until=snooze, taken=taken)
            if paged is not None:
                state = LadderState(snoozed_until=snooze, taken=taken, paged_at=paged)
            steps = schedule(created, deadline, priority, policy, state)
            assert [s.deliver_at for s in steps] == sorted(s.deliver_at for s in steps)
            upcoming = next_step(created, deadline, priority, policy, state)
            assert upcoming == (steps[0] if steps else None)
            for now in (FIRST_INSTANT, T, LAST_INSTANT):
                due_now(created, deadline, priority, policy, state, now)


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12"])
def test_quiet_hours_at_both_ends_of_time_never_raise(zone: str) -> None:
    for start, end in [("22:00", "08:00"), ("08:00", "22:00"), ("00:00", "23:59")]:
        qh = QuietHours(start, end, zone)
        for at in [
            *EXTREMES,
            LAST_INSTANT - timedelta(hours=13),
            FIRST_INSTANT + timedelta(hours=13),
        ]:
            window = quiet_window_at(qh, at)
            assert is_quiet(qh, at) == (window is not None)
            assert quiet_end_after(qh, at) >= at
            start = next_quiet_start(qh, at)
            assert start is None or start > at


def test_service_a_critical_task_due_in_year_9999_is_escalated_and_rebuilt() -> None:
    rig = make_rig(T, safe_default=SafeDefault.NONE, policy=POLICIES["no-quiet"])
    task = Task(id="t", title="No deadline", priority=Priority.CRITICAL, created_at=T)
    rig.tasks.tasks["t"] = FakeTask(task, NEVER)
    rig.alarm.set("t", T)
    asyncio.run(rig.walk("t", until=T + timedelta(hours=3)))
    assert [r.step for r in rig.repository.step_rows["t"]] == ["reminder_dm", "reminder_mention"]
    assert rig.alarm.at["t"] > T + timedelta(days=365)  # the warning, thousands of years away
    rig.clock.now = T + timedelta(hours=4)  # a leader's start
    wakes = asyncio.run(rig.service.rebuild())
    assert wakes == {"t": rig.alarm.at["t"]}
    nxt = rig.service.next_due(rig.tasks.tasks["t"])  # what the task message shows
    assert nxt is not None and nxt.kind is StepKind.SLA_WARNING
