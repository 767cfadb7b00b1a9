"""The escalation ladder walked with an injected clock (contract Appendix B; issue: ladder)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest

from escalation.ladder import (
    LadderState,
    StepDue,
    due_now,
    next_step,
    plan,
    schedule,
)
from escalation.models import Priority
from escalation.policy import EscalationPolicy, QuietHours, StepKind

DM = StepKind.REMINDER_DM
MENTION = StepKind.REMINDER_MENTION
WARNING = StepKind.SLA_WARNING
BREACH = StepKind.SLA_BREACH
CRITICAL = StepKind.CRITICAL

H = timedelta(hours=1)
MIN = timedelta(minutes=1)
T = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC
DEFAULT = EscalationPolicy()
NO_QUIET = EscalationPolicy(quiet_hours=None)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@dataclass(frozen=True)
class Taken:
    kind: StepKind
    due_at: datetime
    taken_at: datetime
    late_seconds: float
    held: bool


def walk(
    created: datetime,
    priority: Priority,
    policy: EscalationPolicy,
    *,
    sla_deadline: datetime | None = None,
    state: LadderState | None = None,
) -> list[Taken]:
    """Play the adapter: wake up at each next step, take what is due once, record it."""
    deadline = policy.deadline_for(created, priority, sla_deadline)
    state = state or LadderState()
    log: list[Taken] = []
    for _ in range(20):
        upcoming = next_step(created, deadline, priority, policy, state)
        if upcoming is None:
            return log
        now = upcoming.deliver_at  # the injected clock jumps to the wake-up
        for step in due_now(created, deadline, priority, policy, state, now):
            log.append(
                Taken(
                    step.kind,
                    step.deliver_at,
                    now,
                    step.late_by_seconds(now),
                    step.held_for_quiet_hours,
                )
            )
            state = state.with_taken(step.kind)
    raise AssertionError("the ladder did not end")


def offsets(log: list[Taken], start: datetime = T) -> list[tuple[StepKind, timedelta]]:
    return [(entry.kind, entry.taken_at - start) for entry in log]


# --- plan: nominal times and skipped steps ----------------------------------------------------

LADDERS = {
    # critical, 1 h: the +2 h mention falls after the breach and is skipped
    Priority.CRITICAL: [(DM, 0.5 * H), (WARNING, 0.75 * H), (BREACH, H), (CRITICAL, 3 * H)],
    Priority.HIGH: [
        (DM, 0.5 * H),
        (MENTION, 2 * H),
        (WARNING, 3 * H),
        (BREACH, 4 * H),
        (CRITICAL, 6 * H),
    ],
    Priority.MEDIUM: [
        (DM, 0.5 * H),
        (MENTION, 2 * H),
        (WARNING, 18 * H),
        (BREACH, 24 * H),
        (CRITICAL, 26 * H),
    ],
    Priority.LOW: [
        (DM, 0.5 * H),
        (MENTION, 2 * H),
        (WARNING, 54 * H),
        (BREACH, 72 * H),
        (CRITICAL, 74 * H),
    ],
}


@pytest.mark.parametrize("priority", list(Priority))
def test_plan_for_each_priority(priority: Priority) -> None:
    deadline = DEFAULT.deadline_for(T, priority)
    assert [(p.kind, p.due_at - T) for p in plan(T, deadline, DEFAULT)] == LADDERS[priority]
    assert all(p.due_at.tzinfo is UTC for p in plan(T, deadline, DEFAULT))


@pytest.mark.parametrize("priority", list(Priority))
def test_walk_the_whole_ladder(priority: Priority) -> None:
    log = walk(T, priority, NO_QUIET)
    assert offsets(log) == LADDERS[priority]
    assert all(entry.late_seconds == 0 for entry in log)
    assert len({entry.kind for entry in log}) == len(log)  # each step once


def test_explicit_sla_deadline_wins() -> None:
    # A high task whose slaDeadline is T + 90 min: the mention (+2 h) is skipped, the warning
    # is 25 % of 90 min (22.5 min) before D.
    log = walk(T, Priority.HIGH, NO_QUIET, sla_deadline=T + 90 * MIN)
    assert offsets(log) == [
        (DM, 30 * MIN),
        (WARNING, 67.5 * MIN),
        (BREACH, 90 * MIN),
        (CRITICAL, 210 * MIN),
    ]


def test_deadline_already_past_skips_every_reminder() -> None:
    deadline = T - 10 * MIN
    assert [(p.kind, p.due_at) for p in plan(T, deadline, NO_QUIET)] == [
        (BREACH, deadline),
        (CRITICAL, deadline + 2 * H),
    ]


def test_equal_reminder_times_keep_the_later_step() -> None:
    policy = EscalationPolicy(dm_after_seconds=3600, mention_after_seconds=3600, quiet_hours=None)
    kinds = [p.kind for p in plan(T, T + 4 * H, policy)]
    assert kinds == [MENTION, WARNING, BREACH, CRITICAL]


def test_zero_percent_warning_is_superseded_by_the_breach() -> None:
    policy = EscalationPolicy(warning_threshold_percent=0, quiet_hours=None)
    assert [p.kind for p in plan(T, T + 4 * H, policy)] == [DM, MENTION, BREACH, CRITICAL]


def test_hundred_percent_warning_comes_at_creation_and_skips_the_reminders() -> None:
    policy = EscalationPolicy(warning_threshold_percent=100, quiet_hours=None)
    assert [(p.kind, p.due_at - T) for p in plan(T, T + 4 * H, policy)] == [
        (WARNING, timedelta(0)),
        (BREACH, 4 * H),
        (CRITICAL, 6 * H),
    ]


def test_breach_and_critical_at_the_same_time_are_both_kept() -> None:
    policy = EscalationPolicy(critical_after_breach_seconds=0, quiet_hours=None)
    assert [p.kind for p in plan(T, T + H, policy)][-2:] == [BREACH, CRITICAL]


# --- decision, acknowledge, snooze ------------------------------------------------------------


def test_decision_stops_everything() -> None:
    state = LadderState(decided=True, taken=frozenset({DM}))
    deadline = T + 4 * H
    assert schedule(T, deadline, Priority.HIGH, DEFAULT, state) == []
    assert next_step(T, deadline, Priority.HIGH, DEFAULT, state) is None
    assert due_now(T, deadline, Priority.HIGH, DEFAULT, state, T + 100 * H) == []


def test_acknowledge_before_the_dm_leaves_breach_and_critical() -> None:
    state = LadderState(acknowledged_at=T + 10 * MIN)
    assert offsets(walk(T, Priority.HIGH, NO_QUIET, state=state)) == [
        (BREACH, 4 * H),
        (CRITICAL, 6 * H),
    ]


def test_acknowledge_after_the_dm_drops_mention_and_warning() -> None:
    deadline = T + 4 * H
    state = LadderState(taken=frozenset({DM}))
    assert [s.kind for s in schedule(T, deadline, Priority.HIGH, NO_QUIET, state)] == [
        MENTION,
        WARNING,
        BREACH,
        CRITICAL,
    ]
    acked = LadderState(acknowledged_at=T + 40 * MIN, taken=frozenset({DM}))
    remaining = schedule(T, deadline, Priority.HIGH, NO_QUIET, acked)
    assert [(s.kind, s.deliver_at - T) for s in remaining] == [(BREACH, 4 * H), (CRITICAL, 6 * H)]


def test_acknowledge_drops_a_reminder_that_was_due_but_not_taken() -> None:
    deadline = T + 4 * H
    state = LadderState(acknowledged_at=T + 3.5 * H)  # the bridge was down since T
    due = due_now(T, deadline, Priority.HIGH, NO_QUIET, state, T + 3.5 * H)
    assert due == []


def test_snooze_delays_reminders_but_never_the_breach() -> None:
    # High task; at +20 min someone snoozes until +2 h 30 min. The DM and the mention both
    # move to +2:30; the DM is then superseded by the mention at the same instant.
    state = LadderState(snoozed_until=T + 2.5 * H)
    steps = schedule(T, T + 4 * H, Priority.HIGH, NO_QUIET, state)
    assert [(s.kind, s.deliver_at - T, s.delayed_by_snooze) for s in steps] == [
        (MENTION, 2.5 * H, True),
        (WARNING, 3 * H, False),
        (BREACH, 4 * H, False),
        (CRITICAL, 6 * H, False),
    ]
    assert steps[0].nominal_at == T + 2 * H


def test_snooze_past_the_deadline_drops_the_reminders() -> None:
    state = LadderState(snoozed_until=T + 5 * H, taken=frozenset({DM}))
    log = walk(T, Priority.HIGH, NO_QUIET, state=state)
    assert offsets(log) == [(BREACH, 4 * H), (CRITICAL, 6 * H)]


def test_snooze_after_the_dm_delays_only_what_is_still_before_it() -> None:
    state = LadderState(snoozed_until=T + H, taken=frozenset({DM}))
    log = walk(T, Priority.HIGH, NO_QUIET, state=state)
    assert offsets(log) == [(MENTION, 2 * H), (WARNING, 3 * H), (BREACH, 4 * H), (CRITICAL, 6 * H)]


def test_snooze_on_a_critical_task() -> None:
    state = LadderState(snoozed_until=T + 50 * MIN, taken=frozenset({DM}))
    log = walk(T, Priority.CRITICAL, DEFAULT, state=state)
    assert offsets(log) == [(WARNING, 50 * MIN), (BREACH, H), (CRITICAL, 3 * H)]


# --- exactly once, late, after downtime -------------------------------------------------------


def test_outage_takes_every_due_step_once_in_ladder_order_marked_late() -> None:
    deadline = T + 4 * H
    state = LadderState()
    now = T + 5 * H  # the bridge was down from T to T + 5 h
    due = due_now(T, deadline, Priority.HIGH, NO_QUIET, state, now)
    assert [s.kind for s in due] == [DM, MENTION, WARNING, BREACH]
    assert [s.late_by_seconds(now) for s in due] == [16200.0, 10800.0, 7200.0, 3600.0]
    assert all(s.is_late(now) for s in due)
    for step in due:
        state = state.with_taken(step.kind)
    assert due_now(T, deadline, Priority.HIGH, NO_QUIET, state, now) == []
    upcoming = next_step(T, deadline, Priority.HIGH, NO_QUIET, state)
    assert upcoming is not None
    assert (upcoming.kind, upcoming.deliver_at) == (CRITICAL, T + 6 * H)
    assert not upcoming.is_late(T + 6 * H + 30 * timedelta(seconds=1))


def test_kill_between_steps_resumes_without_repeating() -> None:
    # Killed after the DM and the mention were recorded, before the rest: on restart only the
    # missing steps come back, and never the recorded ones.
    deadline = T + 4 * H
    restarted = LadderState(taken=frozenset({"reminder_dm", "reminder_mention"}))  # type: ignore[arg-type]
    due = due_now(T, deadline, Priority.HIGH, NO_QUIET, restarted, T + 4.5 * H)
    assert [s.kind for s in due] == [WARNING, BREACH]


def test_ladder_never_goes_backwards() -> None:
    state = LadderState(taken=frozenset({BREACH}))
    steps = schedule(T, T + 4 * H, Priority.HIGH, NO_QUIET, state)
    assert [s.kind for s in steps] == [CRITICAL]


def test_not_due_yet() -> None:
    assert due_now(T, T + 4 * H, Priority.HIGH, NO_QUIET, LadderState(), T + 29 * MIN) == []
    due = due_now(T, T + 4 * H, Priority.HIGH, NO_QUIET, LadderState(), T + 30 * MIN)
    assert [s.kind for s in due] == [DM]
    assert due[0].late_by_seconds(T + 30 * MIN) == 0.0
    assert due[0].late_by_seconds(T) == 0.0


def test_unknown_step_name_is_refused() -> None:
    with pytest.raises(ValueError):
        LadderState(taken=frozenset({"reminder_fax"}))  # type: ignore[arg-type]


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        LadderState(snoozed_until=datetime(2026, 1, 5, 12))
    with pytest.raises(ValueError, match="naive"):
        plan(datetime(2026, 1, 5), T + H, DEFAULT)
    with pytest.raises(ValueError, match="naive"):
        due_now(T, T + H, Priority.HIGH, DEFAULT, LadderState(), datetime(2026, 1, 5, 12))


# --- quiet hours --------------------------------------------------------------------------------


def test_medium_warning_at_night_is_held_to_the_morning() -> None:
    # Created 10:00 UTC: the warning at 04:00 the next day falls in 22:00-08:00 UTC.
    log = walk(T, Priority.MEDIUM, DEFAULT)
    assert [(e.kind, e.taken_at, e.held) for e in log] == [
        (DM, T + 0.5 * H, False),
        (MENTION, T + 2 * H, False),
        (WARNING, utc(2026, 1, 6, 8, 0), True),
        (BREACH, T + 24 * H, False),
        (CRITICAL, T + 26 * H, False),
    ]
    assert all(e.late_seconds == 0 for e in log)  # held is not late


def test_evening_task_across_midnight() -> None:
    created = utc(2026, 1, 5, 21, 0)
    steps = schedule(created, created + 24 * H, Priority.MEDIUM, DEFAULT, LadderState())
    assert [(s.kind, s.nominal_at, s.deliver_at, s.held_for_quiet_hours) for s in steps] == [
        (DM, utc(2026, 1, 5, 21, 30), utc(2026, 1, 5, 21, 30), False),
        (MENTION, utc(2026, 1, 5, 23, 0), utc(2026, 1, 6, 8, 0), True),
        (WARNING, utc(2026, 1, 6, 15, 0), utc(2026, 1, 6, 15, 0), False),
        (BREACH, utc(2026, 1, 6, 21, 0), utc(2026, 1, 6, 21, 0), False),
        (CRITICAL, utc(2026, 1, 6, 23, 0), utc(2026, 1, 7, 8, 0), True),
    ]


def test_low_priority_breach_sms_is_held_to_the_morning() -> None:
    created = utc(2026, 1, 5, 23, 30)
    deadline = DEFAULT.deadline_for(created, Priority.LOW)  # 2026-01-08 23:30
    steps = {s.kind: s for s in schedule(created, deadline, Priority.LOW, DEFAULT, LadderState())}
    assert steps[BREACH].held_for_quiet_hours
    assert steps[BREACH].deliver_at == utc(2026, 1, 9, 8, 0)
    assert steps[CRITICAL].deliver_at == utc(2026, 1, 9, 8, 0)
    # DM (00:00) and mention (01:30) are both held to 08:00: the DM is superseded.
    assert MENTION in steps
    assert DM not in steps
    assert steps[MENTION].deliver_at == utc(2026, 1, 6, 8, 0)


def test_critical_tasks_are_never_held() -> None:
    created = utc(2026, 1, 5, 21, 30)
    log = walk(created, Priority.CRITICAL, DEFAULT)
    assert [(e.kind, e.taken_at, e.held) for e in log] == [
        (DM, utc(2026, 1, 5, 22, 0), False),
        (WARNING, utc(2026, 1, 5, 22, 15), False),
        (BREACH, utc(2026, 1, 5, 22, 30), False),
        (CRITICAL, utc(2026, 1, 6, 0, 30), False),
    ]


def test_warning_held_together_with_the_breach_is_superseded() -> None:
    # Created at midnight with slaDeadline 06:00: every step of the night is held to 08:00;
    # the reminders would arrive together with the breach and are dropped.
    created = utc(2026, 1, 5, 0, 0)
    steps = schedule(created, utc(2026, 1, 5, 6, 0), Priority.MEDIUM, DEFAULT, LadderState())
    assert [(s.kind, s.deliver_at, s.held_for_quiet_hours) for s in steps] == [
        (BREACH, utc(2026, 1, 5, 8, 0), True),
        (CRITICAL, utc(2026, 1, 5, 8, 0), False),  # 06:00 + 2 h is exactly the end: not held
    ]


def test_snooze_ending_in_quiet_hours_is_held() -> None:
    created = utc(2026, 1, 5, 20, 0)
    state = LadderState(snoozed_until=utc(2026, 1, 5, 23, 30))
    steps = schedule(created, created + 72 * H, Priority.LOW, DEFAULT, state)
    first = steps[0]
    assert (first.kind, first.deliver_at) == (MENTION, utc(2026, 1, 6, 8, 0))
    assert first.delayed_by_snooze and first.held_for_quiet_hours


def test_disabled_quiet_hours_hold_nothing() -> None:
    policy = EscalationPolicy(quiet_hours=QuietHours(time(22), time(8), enabled=False))
    created = utc(2026, 1, 5, 21, 0)
    steps = schedule(created, created + 24 * H, Priority.MEDIUM, policy, LadderState())
    assert not any(s.held_for_quiet_hours for s in steps)


NY_NIGHT = EscalationPolicy(quiet_hours=QuietHours(time(22), time(8), "America/New_York"))


def test_quiet_hours_across_spring_forward() -> None:
    # Created 20:30 EST on 2026-03-07 (01:30 UTC on the 8th): the mention at 22:30 EST is held
    # until 08:00 EDT on 2026-03-08, which is 12:00 UTC (not 13:00).
    created = utc(2026, 3, 8, 1, 30)
    steps = {
        s.kind: s
        for s in schedule(created, created + 24 * H, Priority.MEDIUM, NY_NIGHT, LadderState())
    }
    assert steps[DM].deliver_at == utc(2026, 3, 8, 2, 0)  # 21:00 EST
    assert not steps[DM].held_for_quiet_hours
    assert steps[MENTION].deliver_at == utc(2026, 3, 8, 12, 0)
    assert steps[MENTION].held_for_quiet_hours


def test_quiet_hours_across_fall_back() -> None:
    # Created 20:30 EDT on 2026-10-31 (00:30 UTC on 11-01): held until 08:00 EST = 13:00 UTC.
    created = utc(2026, 11, 1, 0, 30)
    steps = {
        s.kind: s
        for s in schedule(created, created + 24 * H, Priority.MEDIUM, NY_NIGHT, LadderState())
    }
    assert steps[MENTION].deliver_at == utc(2026, 11, 1, 13, 0)
    assert steps[MENTION].held_for_quiet_hours


# --- invariants ---------------------------------------------------------------------------------


def _states() -> list[LadderState]:
    kinds = list(StepKind)
    states = []
    for ack, snooze, n_taken in itertools.product(
        (None, T + 40 * MIN), (None, T + 90 * MIN, T + 30 * H), range(0, 3)
    ):
        states.append(
            LadderState(acknowledged_at=ack, snoozed_until=snooze, taken=frozenset(kinds[:n_taken]))
        )
    return states


@pytest.mark.parametrize("priority", list(Priority))
@pytest.mark.parametrize("start_hour", [0, 7, 13, 21, 23])
def test_schedule_is_in_ladder_order_and_held_steps_end_outside_quiet(
    priority: Priority, start_hour: int
) -> None:
    created = utc(2026, 1, 5, start_hour, 0)
    deadline = DEFAULT.deadline_for(created, priority)
    for state in _states():
        steps: list[StepDue] = schedule(created, deadline, priority, DEFAULT, state)
        assert [s.kind.rank for s in steps] == sorted(s.kind.rank for s in steps)
        assert [s.deliver_at for s in steps] == sorted(s.deliver_at for s in steps)
        for s in steps:
            assert s.deliver_at >= s.nominal_at
            assert s.kind not in state.taken
            if s.kind in (BREACH, CRITICAL) and not s.held_for_quiet_hours:
                assert s.deliver_at == s.nominal_at  # ack and snooze never move them
            if priority is Priority.CRITICAL:
                assert not s.held_for_quiet_hours


def test_a_schedule_changed_by_its_caller_does_not_change_the_next_answer() -> None:
    """schedule() is memoized: the caller gets its own list each time."""
    deadline = NO_QUIET.deadline_for(T, Priority.HIGH, None)
    first = schedule(T, deadline, Priority.HIGH, NO_QUIET, LadderState())
    kinds = [s.kind for s in first]
    first.clear()
    again = schedule(T, deadline, Priority.HIGH, NO_QUIET, LadderState())
    assert [s.kind for s in again] == kinds and kinds


def test_steps_taken_given_as_a_list_of_names_plan_like_step_kinds() -> None:
    deadline = NO_QUIET.deadline_for(T, Priority.HIGH, None)
    by_name = LadderState(taken=["reminder_dm", "sla_warning"])  # type: ignore[arg-type]
    by_kind = LadderState(taken=frozenset({DM, WARNING}))
    assert by_name == by_kind
    assert schedule(T, deadline, Priority.HIGH, NO_QUIET, by_name) == schedule(
        T, deadline, Priority.HIGH, NO_QUIET, by_kind
    )
    assert [s.kind for s in schedule(T, deadline, Priority.HIGH, NO_QUIET, by_name)] == [
        BREACH,
        CRITICAL,
    ]


@pytest.mark.parametrize("priority", list(Priority))
def test_tasks_of_one_shape_share_a_schedule_shifted_to_their_creation(
    priority: Priority,
) -> None:
    """Without quiet hours the schedule of tasks created at different instants (with the
    same SLA window, snooze offset and steps taken) is one shape shifted in time — planned
    once per shape (arming 100,000 tasks at a restart) and identical to planning each task
    on its own, the per-task path quiet hours take."""
    from escalation.ladder import _compute_schedule

    repeats = EscalationPolicy(quiet_hours=None, repeat_limit=2)
    window = repeats.deadline_for(T, priority, None) - T
    states = [
        LadderState(),
        LadderState(taken=frozenset({DM})),
        LadderState(acknowledged_at=T + MIN),
        LadderState(snoozed_until=T + 50 * MIN),
        LadderState(snoozed_until=T + 50 * MIN, taken=frozenset({DM, BREACH})),
    ]
    shifts = [timedelta(0), 3 * H + 17 * MIN, timedelta(days=40, seconds=1, microseconds=7)]
    for state, shift in itertools.product(states, shifts):
        created = T + shift
        moved = LadderState(
            acknowledged_at=state.acknowledged_at and state.acknowledged_at + shift,
            snoozed_until=state.snoozed_until and state.snoozed_until + shift,
            taken=state.taken,
        )
        got = schedule(created, created + window, priority, repeats, moved)
        assert got == list(
            _compute_schedule(
                created,
                created + window,
                repeats,
                None,
                None,
                moved.acknowledged,
                moved.snoozed_until,
                moved.taken,
            )
        )
        base = schedule(T, T + window, priority, repeats, state)
        assert [(s.kind, s.deliver_at + shift, s.delayed_by_snooze) for s in base] == [
            (s.kind, s.deliver_at, s.delayed_by_snooze) for s in got
        ]
        assert got, "a ladder with steps left"
        assert next_step(created, created + window, priority, repeats, moved) == got[0]
