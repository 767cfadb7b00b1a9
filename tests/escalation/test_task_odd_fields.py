"""One optional task field the bridge cannot read does not hide the task (contract §1.4 ``Task``).

An optional field of the wrong type or format is treated as missing and logged (naming the
task and the field); a missing ``slaDeadline`` means the policy's deadline (``createdAt`` + the
SLA of the priority, contract §5.3). Required fields (``id``, ``title``, ``createdAt``) and the
fields that carry the production safeguard (``stageName``, ``context``) or the decision itself
still make the task unreadable.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from escalation.ladder import LadderState, schedule
from escalation.models import Priority, Task, TaskDecision, TaskStatus
from escalation.policy import LAST_INSTANT, EscalationPolicy

CREATED = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def raw(**fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "id": "t-odd",
        "title": "Release",
        "createdAt": CREATED.isoformat(),
        "priority": "high",
    }
    task.update(fields)
    return task


def test_an_unreadable_sla_deadline_means_the_policy_deadline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="escalation.models")
    task = Task.model_validate(raw(slaDeadline="in 2 hours"))
    assert task.sla_deadline is None
    policy = EscalationPolicy()
    deadline = policy.deadline_for(task.created_at, task.priority, task.sla_deadline)
    assert deadline == CREATED + timedelta(seconds=policy.sla_seconds[Priority.HIGH])
    [record] = [r for r in caplog.records if r.name == "escalation.models"]
    assert record.levelno == logging.WARNING
    assert "t-odd" in record.getMessage() and "slaDeadline" in record.getMessage()


@pytest.mark.parametrize(
    ("field", "value", "attribute", "expected"),
    [
        ("updatedAt", "yesterday", "updated_at", None),
        ("claimedAt", 12.5e99, "claimed_at", None),
        ("decidedAt", "soon", "decided_at", None),
        ("decisionData", ["not", "an", "object"], "decision_data", {}),
        ("decisionData", "approved", "decision_data", {}),
        ("decidedBy", {"name": "alice"}, "decided_by", None),
        ("description", 42, "description", None),
        ("slaBreached", "maybe", "sla_breached", False),
        ("escalationLevel", "tier two", "escalation_level", 0),
        ("sla_deadline", "in 2 hours", "sla_deadline", None),  # snake_case spelling
    ],
)
def test_an_unreadable_optional_field_is_treated_as_missing(
    caplog: pytest.LogCaptureFixture, field: str, value: Any, attribute: str, expected: Any
) -> None:
    caplog.set_level(logging.WARNING, logger="escalation.models")
    task = Task.model_validate(raw(**{field: value}))
    assert getattr(task, attribute) == expected
    assert task.id == "t-odd" and task.title == "Release" and task.priority is Priority.HIGH
    assert any(
        "t-odd" in r.getMessage() and to_camel(field) in r.getMessage()  # as on the wire
        for r in caplog.records
        if r.name == "escalation.models" and r.levelno == logging.WARNING
    )


def test_a_decided_task_with_an_odd_field_keeps_its_decision() -> None:
    """The factory's answer to a decision: what was decided and by whom is kept."""
    task = Task.model_validate(
        raw(
            status="completed",
            decision="approved",
            decidedBy="alice",
            decidedAt=CREATED.isoformat(),
            slaDeadline="in 2 hours",
            updatedAt="n/a",
        )
    )
    assert task.status is TaskStatus.COMPLETED
    assert task.decision is TaskDecision.APPROVED and task.decided_by == "alice"
    assert task.decided_at == CREATED and task.sla_deadline is None


def test_the_json_form_reads_the_same_and_round_trips_silently(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = Task.model_validate_json(
        '{"id": "t-odd", "title": "x", "createdAt": "2026-11-21T10:00:00Z",'
        ' "slaDeadline": "in 2 hours", "decisionData": 3}'
    )
    assert task.sla_deadline is None and task.decision_data == {}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="escalation.models"):
        again = Task.model_validate_json(task.model_dump_json(by_alias=True))
    assert again == task
    assert caplog.records == []


@pytest.mark.parametrize("field", ["priority", "type", "status"])
def test_a_null_enum_counts_as_an_unknown_value(field: str) -> None:
    task = Task.model_validate(raw(**{field: None}))
    assert task.priority is Priority.HIGH
    assert task.status is TaskStatus.PENDING and task.is_open


def test_a_datetime_outside_the_utc_range_is_a_validation_error() -> None:
    """``0001-01-01T00:00:00+01:00`` is before year 1 in UTC: unreadable, not a crash."""
    with pytest.raises(ValidationError):
        Task.model_validate(raw(createdAt="0001-01-01T00:00:00+01:00"))


@pytest.mark.parametrize("sla_deadline", ["9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59-05:00"])
def test_a_deadline_past_year_9999_in_utc_is_never_due(sla_deadline: str) -> None:
    """Past year 9999 once in UTC, a deadline is the last instant (README: never due), the
    same instant the policy takes for it (:func:`escalation.policy.as_aware_utc`); not the
    priority's SLA, which would page within hours."""
    task = Task.model_validate(raw(slaDeadline=sla_deadline))
    assert task.sla_deadline == LAST_INSTANT
    policy = EscalationPolicy()
    deadline = policy.deadline_for(task.created_at, task.priority, task.sla_deadline)
    assert deadline == LAST_INSTANT
    pages = [
        step.deliver_at
        for step in schedule(task.created_at, deadline, task.priority, policy, LadderState())
        if not step.kind.is_reminder
    ]
    assert pages == [LAST_INSTANT]  # the breach at the last instant; nothing before it


@pytest.mark.parametrize(
    "fields",
    [
        {"createdAt": "last Tuesday-ish"},
        {"createdAt": None},
        {"title": ""},
        {"id": "a b"},
        {"id": None},
        {"stageName": "prod"},  # may be production: the safeguard is never guessed away
        {"context": {"metrics": {"deploysToProduction": "yes"}}},
        {"decision": "withdrawn"},
        {"createdAt": "later", "slaDeadline": "in 2 hours"},
    ],
)
def test_a_required_or_guarded_field_still_makes_the_task_unreadable(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate(raw(**fields))
