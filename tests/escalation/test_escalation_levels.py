"""The factory learns the ladder's escalation level (``escalate`` deliveries), on the fakes.

Levels per step come from the contract's Appendix B (reminders 1, SLA warning 2, breach 3,
critical 4); each level is reported once, in order, only for a task with an approval.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from escalation.deliveries import (
    ESCALATION_LEVELS,
    IDEMPOTENT_CHANNELS,
    NewDelivery,
    escalate_levels,
    escalate_recipient,
    level_of,
    reported_level,
)
from escalation.ladder import plan
from escalation.models import Priority
from escalation.policy import StepKind
from tests.support.ladder_fakes import Rig, make_rig

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def escalations(rig: Rig) -> list[tuple[str, int, str, str | None]]:
    return list(rig.decider.escalated)


def escalate_rows(rig: Rig, task_id: str) -> list[tuple[str, str, str]]:
    """(step, recipient, status) of the task's ``escalate`` deliveries, oldest first."""
    return [
        (r.step, r.recipient, r.status)
        for r in rig.repository.of(task_id)
        if r.channel == "escalate"
    ]


def test_appendix_b_gives_each_step_its_level() -> None:
    assert ESCALATION_LEVELS == {
        StepKind.REMINDER_DM: 1,
        StepKind.REMINDER_MENTION: 1,
        StepKind.SLA_WARNING: 2,
        StepKind.SLA_BREACH: 3,
        StepKind.CRITICAL: 4,
    }
    assert escalate_levels(StepKind.REMINDER_MENTION, {1}, closed=False) == []
    assert escalate_levels(StepKind.SLA_BREACH, {1}, closed=False) == [2, 3]
    assert escalate_levels(StepKind.CRITICAL, set(), closed=True) == []
    assert level_of(escalate_recipient(3)) == 3 and level_of("Alice") is None
    assert level_of("level 9") is None
    assert "escalate" in IDEMPOTENT_CHANNELS
    outcome = {
        "deliveries": [
            {"channel": "escalate", "recipient": "level 2", "status": "sent"},
            {"channel": "escalate", "recipient": "level 3", "status": "failed"},
            {"channel": "reply", "recipient": "task", "status": "sent"},
        ]
    }
    assert reported_level(outcome) == 2 and reported_level({}) is None


@pytest.mark.parametrize("priority", list(Priority))
def test_an_approval_task_reports_each_level_once_in_order(priority: Priority) -> None:
    rig = make_rig(START)
    tracked = rig.add("t", priority, created=START, approval_id="ap-1")
    steps = [p.kind for p in plan(START, tracked.deadline, rig.service.policy)]
    asyncio.run(rig.walk("t"))
    done = escalations(rig)
    assert [(task, level) for task, level, _, _ in done] == [("t", n) for n in (1, 2, 3, 4)]
    assert [to for *_, to in done] == [None, None, None, "u-dave"]  # the reassigned admin
    assert "Escalation level 4 of 4 (critical)" in done[3][2]
    # each level's delivery belongs to the first step that reached it, and was sent
    rows = escalate_rows(rig, "t")
    assert [status for *_, status in rows] == ["sent"] * 4
    for step, recipient, _ in rows:
        level = level_of(recipient)
        assert level is not None
        first = next(k for k in steps if ESCALATION_LEVELS[k] >= level)
        assert step == first.value
    # level 4 went out before the safe default decided the task
    critical = [r.channel for r in rig.repository.of("t") if r.step == "critical"]
    assert critical.index("escalate") < critical.index("decision")
    assert rig.decider.decided == [("t", "deferred")]


def test_a_task_without_an_approval_is_not_escalated_at_the_factory() -> None:
    rig = make_rig(START)
    rig.add("t", Priority.HIGH, created=START)
    asyncio.run(rig.walk("t"))
    assert escalations(rig) == [] and escalate_rows(rig, "t") == []
    assert [s.step for s in rig.repository.step_rows["t"]][-1] == "critical"


def test_a_failed_level_is_caught_up_by_the_next_step_before_its_own() -> None:
    rig = make_rig(START)
    rig.decider.escalate_answers = [("failed", {"error": "factory answered 500"})]
    rig.add("t", Priority.HIGH, created=START, approval_id="ap-1")
    asyncio.run(rig.walk("t"))
    assert [level for _, level, _, _ in escalations(rig)] == [1, 2, 3, 4]
    assert escalate_rows(rig, "t") == [
        ("reminder_dm", "level 1", "failed"),
        ("reminder_mention", "level 1", "sent"),  # caught up by the next step
        ("sla_warning", "level 2", "sent"),
        ("sla_breach", "level 3", "sent"),
        ("critical", "level 4", "sent"),
    ]
    assert any(
        e[1] == "escalation.escalate" and e[2] == "failed" and "500" in e[3]
        for e in rig.audit.entries
    )


def test_a_404_or_409_is_recorded_and_nothing_more_is_escalated() -> None:
    rig = make_rig(START)
    note = {"note": "approval not escalated: factory answered 409 CONFLICT: approval approved"}
    rig.decider.escalate_answers = [("skipped", note)]
    rig.add("t", Priority.HIGH, created=START, approval_id="ap-1")
    asyncio.run(rig.walk("t"))
    assert escalations(rig) == []
    assert escalate_rows(rig, "t") == [("reminder_dm", "level 1", "skipped")]
    assert any(
        e[1] == "escalation.escalate" and e[2] == "skipped" and "409" in e[3]
        for e in rig.audit.entries
    )


def test_an_acknowledged_task_reports_the_levels_it_skipped_at_the_breach() -> None:
    rig = make_rig(START)
    rig.add("t", Priority.HIGH, created=START, acknowledged_at=START, approval_id="ap-1")
    asyncio.run(rig.walk("t"))
    assert [level for _, level, _, _ in escalations(rig)] == [1, 2, 3, 4]
    assert [(step, status) for step, _, status in escalate_rows(rig, "t")] == [
        ("sla_breach", "sent"),
        ("sla_breach", "sent"),
        ("sla_breach", "sent"),
        ("critical", "sent"),
    ]
    assert "reported at the sla breach step" in escalations(rig)[0][2]


def test_an_escalation_interrupted_by_a_restart_is_sent_again_once() -> None:
    rig = make_rig(START)
    tracked = rig.add("t", Priority.HIGH, created=START, approval_id="ap-1")
    first = plan(START, tracked.deadline, rig.service.policy)[0]
    assert first.kind is StepKind.REMINDER_DM
    rig.clock.now = first.due_at
    claim = rig.repository.claim_step(
        "t", first.kind.value, due_at=first.due_at, now=first.due_at,
        deliveries=[NewDelivery("escalate", escalate_recipient(1), detail={"level": 1})],
    )  # fmt: skip
    assert asyncio.run(claim)
    (row,) = rig.repository.of("t")
    assert asyncio.run(rig.repository.claim_deliveries([row.id], first.due_at))  # then kill -9
    asyncio.run(rig.service.recover())
    assert rig.repository.rows[row.id].status == "pending"
    assert any(
        e[1] == "escalation.escalate" and e[2] == "retry" and "sent again" in e[3]
        for e in rig.audit.entries
    )
    asyncio.run(rig.walk("t"))
    assert [level for _, level, _, _ in escalations(rig)] == [1, 2, 3, 4]
    assert escalate_rows(rig, "t")[0] == ("reminder_dm", "level 1", "sent")
