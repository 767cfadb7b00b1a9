"""A step the schedule held to the end of one quiet window, still not taken when the bridge
comes back inside the next window, waits for that window's end too (README "Quiet hours":
a step that comes due inside quiet hours waits for their end; every step that came due
while the bridge was down is taken once, late, in ladder order).

Taken at once, it was paged at night and jumped ahead of the earlier steps waiting for the
morning, which the ladder then dropped: a medium task's SLA breach was never alerted while
its critical call and safe default ran at 23:00.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from escalation.models import Priority
from escalation.policy import EscalationPolicy, QuietHours, SafeDefault
from escalation.quiet_hours import is_quiet
from tests.support.ladder_fakes import make_rig

QUIET = QuietHours("22:00", "08:00", "UTC")
MONDAY_2030 = datetime(2026, 3, 2, 20, 30, tzinfo=UTC)
TUESDAY_2300 = datetime(2026, 3, 3, 23, 0, tzinfo=UTC)  # inside Tuesday night's window
WEDNESDAY_0800 = datetime(2026, 3, 4, 8, 0, tzinfo=UTC)


def _steps(rig) -> list[tuple[str, datetime]]:  # type: ignore[no-untyped-def]
    return [(row.step, row.taken_at) for row in rig.repository.step_rows["t"]]


def test_the_breach_is_not_lost_when_the_held_critical_step_comes_due_in_the_next_night() -> None:
    policy = EscalationPolicy(quiet_hours=QUIET, safe_default=SafeDefault.DEFERRED)
    rig = make_rig(MONDAY_2030, policy=policy)
    rig.add("t", Priority.MEDIUM, created=MONDAY_2030)
    rig.tasks.update("t", deadline=MONDAY_2030 + timedelta(hours=1))  # slaDeadline 21:30
    asyncio.run(rig.walk("t", until=MONDAY_2030 + timedelta(minutes=50)))
    assert [step for step, _ in _steps(rig)] == ["reminder_dm", "sla_warning"]
    # down from Monday 21:20 until Tuesday 23:00: the breach (21:30) and the critical step
    # (23:30, held by the schedule to Tuesday 08:00) both came due meanwhile
    rig.clock.now = TUESDAY_2300
    asyncio.run(rig.walk("t", until=TUESDAY_2300 + timedelta(hours=2)))
    assert _steps(rig)[2:] == []  # nothing at night: no call, no safe default
    assert rig.pager.calls == []
    assert rig.decider.decided == []
    asyncio.run(rig.walk("t", until=WEDNESDAY_0800))
    taken = _steps(rig)
    assert [step for step, _ in taken] == ["reminder_dm", "sla_warning", "sla_breach", "critical"]
    assert all(at == WEDNESDAY_0800 for _, at in taken[2:])  # late, in ladder order, once


def test_a_held_mention_is_not_posted_inside_the_next_quiet_window() -> None:
    monday_2100 = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
    policy = EscalationPolicy(quiet_hours=QUIET, safe_default=SafeDefault.NONE)
    rig = make_rig(monday_2100, policy=policy)
    rig.add("t", Priority.MEDIUM, created=monday_2100)  # DM 21:30; mention 23:00 → held to 08:00
    asyncio.run(rig.walk("t", until=monday_2100 + timedelta(minutes=30)))
    assert [step for step, _ in _steps(rig)] == ["reminder_dm"]
    rig.clock.now = TUESDAY_2300
    asyncio.run(rig.service.wake("t"))
    assert [step for step, at in _steps(rig) if is_quiet(QUIET, at)] == []
    assert rig.alarm.at["t"] == WEDNESDAY_0800  # it waits for this window's end
