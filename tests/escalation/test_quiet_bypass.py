"""Urgency through quiet hours (issue 14): the breach and critical pages of a high or critical
task are never held; reminders are; medium and low keep the morning digest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from escalation.ladder import LadderState, StepDue, schedule
from escalation.models import Priority
from escalation.policy import EscalationPolicy, StepKind

H = timedelta(hours=1)
DEFAULT = EscalationPolicy()  # quiet 22:00-08:00 UTC, bypass critical + high
NIGHT_BREACH = datetime(2026, 1, 5, 23, 0, tzinfo=UTC)


def steps(priority: Priority, policy: EscalationPolicy = DEFAULT) -> dict[StepKind, StepDue]:
    created = NIGHT_BREACH - 4 * H  # 19:00: reminders before and inside the night
    return {s.kind: s for s in schedule(created, NIGHT_BREACH, priority, policy, LadderState())}


def test_high_breach_at_23_pages_at_once_and_the_call_too() -> None:
    planned = steps(Priority.HIGH)
    breach, critical = planned[StepKind.SLA_BREACH], planned[StepKind.CRITICAL]
    assert breach.deliver_at == NIGHT_BREACH and not breach.held_for_quiet_hours
    assert critical.deliver_at == NIGHT_BREACH + 2 * H
    assert not critical.held_for_quiet_hours


def test_high_reminders_in_the_night_are_still_held_or_superseded() -> None:
    planned = steps(Priority.HIGH)
    # the @mention (21:00) is before quiet hours; the warning (22:00) would be held to 08:00,
    # after the breach: superseded, never sent
    assert StepKind.SLA_WARNING not in planned
    assert not any(s.held_for_quiet_hours for s in planned.values())


@pytest.mark.parametrize("priority", [Priority.MEDIUM, Priority.LOW])
def test_medium_and_low_keep_the_morning_digest(priority: Priority) -> None:
    breach = steps(priority)[StepKind.SLA_BREACH]
    assert breach.held_for_quiet_hours
    assert breach.deliver_at == datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


def test_bypass_is_configurable() -> None:
    nobody = EscalationPolicy(quiet_bypass_priorities=frozenset())
    assert steps(Priority.HIGH, nobody)[StepKind.SLA_BREACH].held_for_quiet_hours
    medium_too = EscalationPolicy(quiet_bypass_priorities=frozenset({Priority.MEDIUM}))
    assert not steps(Priority.MEDIUM, medium_too)[StepKind.SLA_BREACH].held_for_quiet_hours
    # a critical task is never held, bypass list or not
    assert not any(s.held_for_quiet_hours for s in steps(Priority.CRITICAL, nobody).values())
    with pytest.raises(ValueError, match="quiet_bypass_priorities"):
        EscalationPolicy(quiet_bypass_priorities=frozenset({"urgent"}))  # type: ignore[arg-type]
