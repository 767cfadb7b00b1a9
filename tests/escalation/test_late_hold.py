"""Quiet hours for steps taken late (escalation.late_hold): a step planned before quiet hours
but due inside them — the bridge restarts at 23:30, or a storm makes it late — waits for
their end like the steps the schedule holds, and joins the morning digest; pages of a bypass
priority and every step of a critical task still go at once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from escalation.ladder_state import StepDue
from escalation.late_hold import late_hold
from escalation.models import Priority
from escalation.policy import EscalationPolicy, QuietHours, SafeDefault, StepKind
from tests.support.ladder_fakes import make_rig

H = timedelta(hours=1)
#: quiet 22:00-08:00 Europe/London (UTC+0 in January), bypass critical and high
POLICY = EscalationPolicy(
    quiet_hours=QuietHours("22:00", "08:00", "Europe/London"), safe_default=SafeDefault.DEFERRED
)
EVENING = datetime(2026, 1, 5, 19, 0, tzinfo=UTC)
NIGHT = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
MORNING = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)


async def test_a_reminder_due_before_quiet_hours_and_taken_at_night_waits_for_the_morning() -> None:
    rig = make_rig(EVENING, policy=POLICY)
    rig.add("t", Priority.MEDIUM, created=EVENING)  # DM planned 19:30, SLA 24 h
    rig.clock.now = NIGHT  # the bridge was down from 19:00 to 23:30
    await rig.service.wake("t")
    assert rig.repository.step_rows.get("t", []) == []  # nothing taken at night
    assert rig.alarm.at["t"] == MORNING
    rig.clock.now = MORNING
    await rig.service.wake("t")
    [step] = rig.repository.step_rows["t"]
    assert step.step == StepKind.REMINDER_DM.value
    rows = rig.repository.of("t")
    assert rows and all(r.held for r in rows)  # in the person's digest


async def test_a_high_breach_due_at_night_goes_at_once_and_supersedes_the_held_reminders() -> None:
    rig = make_rig(EVENING, policy=POLICY)
    created = EVENING - H  # 18:00, SLA 4 h: breach at 22:00, a bypass page
    rig.add("t", Priority.HIGH, created=created)
    rig.clock.now = NIGHT
    await rig.service.wake("t")
    taken = [r.step for r in rig.repository.step_rows["t"]]
    assert taken == [StepKind.SLA_BREACH.value]  # the DM, mention and warning never go
    sms = [r for r in rig.repository.of("t") if r.channel == "sms"]
    assert sms and not any(r.held for r in sms)  # the bundler sends them now, not at 08:00


async def test_a_critical_task_is_never_held() -> None:
    rig = make_rig(EVENING, policy=POLICY)
    rig.add("t", Priority.CRITICAL, created=NIGHT - H / 2)  # DM due 23:30 (after 30 min)
    rig.clock.now = NIGHT + timedelta(minutes=1)
    await rig.service.wake("t")
    assert [r.step for r in rig.repository.step_rows["t"]] == [StepKind.REMINDER_DM.value]


def test_a_step_taken_after_a_window_passed_is_marked_held() -> None:
    step = StepDue(StepKind.REMINDER_DM, EVENING, EVENING)
    wait, held = late_hold(step, Priority.MEDIUM, POLICY, MORNING + H)
    assert wait is None and held.held_for_quiet_hours
    wait, same = late_hold(step, Priority.MEDIUM, POLICY, EVENING + H)  # 20:00: not quiet
    assert wait is None and same is step
    wait, _ = late_hold(step, Priority.MEDIUM, POLICY, NIGHT)
    assert wait == MORNING
    assert late_hold(step, Priority.MEDIUM, EscalationPolicy(quiet_hours=None), NIGHT) == (
        None,
        step,
    )


async def test_a_held_reminder_does_not_delay_a_bypass_page_due_later_in_the_night() -> None:
    """The high task's warning (21:30) is taken late at 22:05 and waits for 08:00; its breach
    page (22:30, a bypass priority) must still go at 22:30, and the critical step at 00:30 —
    not all at 08:00."""
    day = datetime(2026, 1, 5, tzinfo=UTC)
    rig = make_rig(day.replace(hour=18, minute=30), policy=POLICY)
    rig.add("t", Priority.HIGH, created=day.replace(hour=18, minute=30))  # deadline 22:30
    await rig.walk("t", until=day.replace(hour=21))  # the DM and the mention
    rig.clock.now = day.replace(hour=22, minute=5)  # the warning, taken late (a storm)
    await rig.service.wake("t")
    assert rig.alarm.at["t"] == day.replace(hour=22, minute=30)
    await rig.walk("t", until=MORNING + H)
    taken = {r.step: r.taken_at for r in rig.repository.step_rows["t"]}
    assert taken[StepKind.SLA_BREACH.value] == day.replace(hour=22, minute=30)
    assert taken[StepKind.CRITICAL.value] == day.replace(hour=22, minute=30) + 2 * H
    assert StepKind.SLA_WARNING.value not in taken  # superseded by the breach
