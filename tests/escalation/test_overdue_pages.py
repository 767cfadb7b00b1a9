"""Pages that came due together ring once (review of the ladder, defects 2 and 3).

An overdue task (``slaDeadline`` hours in the past, or the bridge down for hours) and a night
of quiet hours both used to bunch the pages: an overdue high task got the critical call and
every repeat within a second (four calls to one person, the task three times in one SMS); a
medium task whose critical step and last repeat were both held to 08:00 got two calls in a
row, then nothing. Now the pages that came due together ring once, and the repeats follow
``repeat_seconds`` apart from when that page actually went out (README "Phone", "Repeat
until someone answers"). Times are injected; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from escalation.ladder import LadderState, due_now, next_step, schedule
from escalation.models import Priority, Task
from escalation.policy import EscalationPolicy, SafeDefault, StepKind
from escalation.ports import LadderStepRow
from escalation.progress import StepPlans
from tests.support.ladder_fakes import ALICE, FakeTask, Rig, make_rig

H = timedelta(hours=1)
MIN = timedelta(minutes=1)
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BREACH, CRITICAL = StepKind.SLA_BREACH, StepKind.CRITICAL
R1, R2, R3, R4 = StepKind.REPEAT_1, StepKind.REPEAT_2, StepKind.REPEAT_3, StepKind.REPEAT_4
CALLS = (CRITICAL, *(k for k in StepKind if k.repeat_number))


def repeating(limit: int = 3, **changes: object) -> EscalationPolicy:
    """Repeats every 30 min; no quiet hours unless ``changes`` says."""
    fields: dict[str, object] = {"quiet_hours": None, "repeat_seconds": 1800, "repeat_limit": limit}
    fields.update(changes)
    return EscalationPolicy(**fields)  # type: ignore[arg-type]


def overdue_rig(policy: EscalationPolicy, late: timedelta = 4 * H) -> Rig:
    """A rig with a high task that arrives now, its ``slaDeadline`` ``late`` ago; the safe
    default is ``none`` so that the task stays open after the critical step."""
    rig = make_rig(NOW, safe_default=SafeDefault.NONE, policy=policy)
    task = Task(id="t", title="Stripe MCP", priority=Priority.HIGH, created_at=NOW)
    rig.tasks.tasks["t"] = FakeTask(task, NOW - late)
    rig.alarm.set("t", NOW)
    return rig


def taken(rig: Rig) -> list[tuple[str, datetime]]:
    return [(r.step, r.taken_at) for r in rig.repository.step_rows.get("t", [])]


def sms_steps(rig: Rig) -> list[str]:
    """The step of each SMS written for a person (the bundler sends them grouped)."""
    return [r.step for r in rig.repository.of("t") if r.channel == "sms" and r.recipient == "Alice"]


# --- defect 2: an overdue task ------------------------------------------------------------------


def test_an_overdue_task_gets_the_breach_and_one_call_not_a_call_per_missed_repeat() -> None:
    policy = repeating()
    deadline = NOW - 4 * H  # breach, critical and repeats 1-3 all passed
    due = due_now(NOW, deadline, Priority.HIGH, policy, LadderState(), NOW)
    assert [s.kind for s in due] == [BREACH, CRITICAL]


def test_after_a_late_critical_call_the_repeats_count_from_when_it_went_out() -> None:
    policy = repeating()
    deadline = NOW - 4 * H
    state = LadderState().with_taken(BREACH, CRITICAL, at=NOW + 2 * MIN)
    assert due_now(NOW, deadline, Priority.HIGH, policy, state, NOW + 3 * MIN) == []
    upcoming = next_step(NOW, deadline, Priority.HIGH, policy, state)
    assert upcoming is not None and (upcoming.kind, upcoming.deliver_at) == (R1, NOW + 32 * MIN)


def test_service_an_overdue_high_task_rings_once_then_every_30_minutes() -> None:
    rig = overdue_rig(repeating())
    asyncio.run(rig.walk("t", until=NOW + MIN))
    assert [to for to, _ in rig.pager.calls] == [ALICE.phone]  # not four calls in a second
    assert sms_steps(rig) == ["sla_breach"]  # not the task three more times in one SMS
    assert rig.decider.reassigned == [("t", "Dave")]  # Appendix B: critical applies, late
    asyncio.run(rig.walk("t"))
    assert taken(rig) == [
        ("sla_breach", NOW),
        ("critical", NOW),
        ("repeat_1", NOW + 30 * MIN),
        ("repeat_2", NOW + 60 * MIN),
        ("repeat_3", NOW + 90 * MIN),
    ]
    assert len(rig.pager.calls) == 4


def test_service_repeats_missed_during_downtime_ring_once_and_the_next_counts_from_it() -> None:
    rig = overdue_rig(repeating(limit=5), late=2 * H)  # critical due now
    asyncio.run(rig.walk("t", until=NOW))
    assert [step for step, _ in taken(rig)] == ["sla_breach", "critical"]
    rig.clock.now = NOW + 100 * MIN  # down since just after the call: repeats 1-3 missed
    asyncio.run(rig.service.wake("t"))
    assert taken(rig)[2:] == [("repeat_3", NOW + 100 * MIN)]  # one page, not three
    assert len(rig.pager.calls) == 2
    assert rig.alarm.at["t"] == NOW + 130 * MIN  # repeat 4 counts from the page that went out
    asyncio.run(rig.walk("t"))
    assert taken(rig)[3:] == [("repeat_4", NOW + 130 * MIN), ("repeat_5", NOW + 160 * MIN)]


def test_a_rebuild_after_a_late_call_arms_the_next_repeat_from_it() -> None:
    rig = overdue_rig(repeating())
    asyncio.run(rig.walk("t", until=NOW + MIN))
    rig.clock.now = NOW + 5 * MIN  # a restart
    wakes = asyncio.run(rig.service.rebuild())
    assert wakes == {"t": NOW + 30 * MIN}


def test_step_plans_agree_with_the_ladder_after_late_calls() -> None:
    policy = repeating(limit=5)
    task = FakeTask(Task(id="t", title="T", priority=Priority.HIGH, created_at=NOW), NOW - 4 * H)
    plans = StepPlans(policy)
    for last, at in [
        (CRITICAL, NOW + 7 * MIN),
        (R2, NOW + 3 * H),
        (StepKind.REPEAT_5, NOW + 9 * H),
    ]:
        rows = [LadderStepRow("t", last.value, NOW, at, 0.0, "done", {})]
        state = LadderState(taken=frozenset({last}), paged_at=at)
        args = (NOW, task.deadline, Priority.HIGH, policy, state)
        assert plans.next(task, rows, policy) == next_step(*args)
        for minutes in range(0, 12 * 60, 7):
            due = due_now(*args, NOW + minutes * MIN)
            assert plans.due(task, rows, policy, NOW + minutes * MIN) == (due[0] if due else None)


# --- defect 3: quiet hours --------------------------------------------------------------------


def medium_at_21(
    created: datetime, policy: EscalationPolicy
) -> dict[StepKind, tuple[datetime, bool]]:
    deadline = policy.deadline_for(created, Priority.MEDIUM)
    steps = schedule(created, deadline, Priority.MEDIUM, policy, LadderState())
    return {s.kind: (s.deliver_at, s.held_for_quiet_hours) for s in steps if s.kind in CALLS}


def test_a_held_critical_call_rings_once_at_8_then_the_repeats_follow_from_8() -> None:
    # created 21:00: critical at 23:00 and repeats 1-3 until 00:30, all in quiet hours
    policy = EscalationPolicy(repeat_seconds=1800, repeat_limit=3)  # quiet 22:00-08:00 UTC
    pages = medium_at_21(datetime(2026, 1, 4, 21, 0, tzinfo=UTC), policy)
    eight = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert pages == {
        CRITICAL: (eight, True),
        R1: (eight + 30 * MIN, False),
        R2: (eight + 60 * MIN, False),
        R3: (eight + 90 * MIN, False),
    }


def test_service_a_held_critical_call_and_the_last_repeat_do_not_ring_twice_at_8() -> None:
    created = datetime(2026, 1, 4, 21, 0, tzinfo=UTC)
    policy = EscalationPolicy(repeat_seconds=1800, repeat_limit=3, safe_default=SafeDefault.NONE)
    rig = make_rig(created, policy=policy)
    rig.add("t", Priority.MEDIUM, created=created)
    asyncio.run(rig.walk("t"))
    eight = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    calls = [(step, at) for step, at in taken(rig) if StepKind(step) in CALLS]
    assert calls == [
        ("critical", eight),
        ("repeat_1", eight + 30 * MIN),
        ("repeat_2", eight + 60 * MIN),
        ("repeat_3", eight + 90 * MIN),
    ]
    assert len(rig.pager.calls) == 4


def test_repeats_held_in_one_night_still_page_once_and_the_next_counts_from_8() -> None:
    # critical at 21:00 (before quiet hours); every 4 h: repeats at 01:00 and 05:00 are held
    policy = EscalationPolicy(repeat_seconds=4 * 3600, repeat_limit=4)
    pages = medium_at_21(datetime(2026, 1, 4, 19, 0, tzinfo=UTC), policy)
    eight = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert pages == {
        CRITICAL: (datetime(2026, 1, 5, 21, 0, tzinfo=UTC), False),
        R2: (eight, True),  # repeat 1 (01:00) is superseded by it
        R3: (eight + 4 * H, False),
        R4: (eight + 8 * H, False),
    }
