"""Repeat until someone answers (issue 14): the pure rules of the repeat steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from escalation.deliveries import NewDelivery, plan_deliveries, stop_reason
from escalation.ladder import LadderState, StepDue, schedule
from escalation.models import Priority
from escalation.policy import MAX_REPEATS, EscalationPolicy, SafeDefault, StepKind
from escalation.recipients import Person

H = timedelta(hours=1)
T = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
D = T + 4 * H  # a high task's SLA
REPEATS = EscalationPolicy(quiet_hours=None, repeat_seconds=1800, repeat_limit=3)
R1, R2, R3 = StepKind.REPEAT_1, StepKind.REPEAT_2, StepKind.REPEAT_3


def kinds(policy: EscalationPolicy, state: LadderState | None = None) -> dict[StepKind, StepDue]:
    return {s.kind: s for s in schedule(T, D, Priority.HIGH, policy, state or LadderState())}


def test_repeats_follow_the_critical_step_every_repeat_seconds_up_to_the_limit() -> None:
    planned = kinds(REPEATS)
    critical = planned[StepKind.CRITICAL].deliver_at
    assert [planned[k].deliver_at for k in (R1, R2, R3)] == [
        critical + timedelta(minutes=30),
        critical + timedelta(minutes=60),
        critical + timedelta(minutes=90),
    ]
    assert StepKind.REPEAT_4 not in planned


def test_limit_zero_turns_them_off_and_is_bounded() -> None:
    assert not any(k.repeat_number for k in kinds(EscalationPolicy(quiet_hours=None)))
    with pytest.raises(ValueError, match="repeat_limit"):
        EscalationPolicy(repeat_limit=MAX_REPEATS + 1)
    with pytest.raises(ValueError, match="repeat_seconds"):
        EscalationPolicy(repeat_limit=1, repeat_seconds=0)


def test_an_acknowledgement_stops_them_a_snooze_does_not_move_them() -> None:
    acked = kinds(REPEATS, LadderState(acknowledged_at=D))
    assert not any(k.repeat_number for k in acked)
    assert StepKind.CRITICAL in acked  # the SLA stays
    snoozed = kinds(REPEATS, LadderState(snoozed_until=D + 10 * H))
    assert snoozed[R1].deliver_at == kinds(REPEATS)[R1].deliver_at


def test_taken_repeats_are_not_planned_again() -> None:
    taken = frozenset({StepKind.SLA_BREACH, StepKind.CRITICAL, R1})
    planned = kinds(REPEATS, LadderState(taken=taken))
    assert list(planned) == [R2, R3]


def test_held_repeats_at_the_same_morning_time_page_once() -> None:
    # a medium task whose critical step is at 23:00: it and all three repeats fall in the night
    policy = EscalationPolicy(repeat_seconds=1800, repeat_limit=3)  # quiet 22:00-08:00 UTC
    created = datetime(2026, 1, 4, 21, 0, tzinfo=UTC)
    deadline = datetime(2026, 1, 5, 21, 0, tzinfo=UTC)
    planned = {
        s.kind: s for s in schedule(created, deadline, Priority.MEDIUM, policy, LadderState())
    }
    eight = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    calls = [k for k in planned if k is StepKind.CRITICAL or k.repeat_number]
    assert [k for k in calls if planned[k].deliver_at == eight] == [StepKind.CRITICAL]  # one
    assert planned[StepKind.CRITICAL].held_for_quiet_hours
    # the repeats follow the call that went out at 08:00 (review: critical and repeat 3 both
    # rang at 08:00, then nothing)
    assert [(k, planned[k].deliver_at) for k in calls[1:]] == [
        (R1, eight + timedelta(minutes=30)),
        (R2, eight + timedelta(minutes=60)),
        (R3, eight + timedelta(minutes=90)),
    ]


ALICE = Person("Alice", discord_user_id=1, phone="+15550100001", on_call=True)
DAVE = Person("Dave", discord_user_id=2, phone="+15550100002", on_call=True, admin=True)


def test_a_repeat_pages_like_the_breach_sms_and_a_call() -> None:
    step = StepDue(R1, D, D)
    planned = plan_deliveries(
        step,
        people=[ALICE, DAVE],
        assignee=None,
        unreachable={ALICE.phone or ""},
        safe_default=SafeDefault.REJECTED,
        escalate=(),
    )
    assert planned == [NewDelivery("call", "Dave"), NewDelivery("sms", "Dave")]


def test_stop_reasons_of_a_repeat() -> None:
    assert stop_reason(R2, "sms", decision=None, acknowledged=True) == "acknowledged"
    assert stop_reason(R2, "call", decision="approved", acknowledged=False) == "task approved"
    assert stop_reason(R2, "call", decision=None, acknowledged=False) is None
