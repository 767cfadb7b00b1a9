"""A factory time without a zone is UTC in pipelines and events too (factory contract §1.4).

A naive ``Pipeline.updatedAt`` made ``/factory blockers`` fail ("can't subtract offset-naive
and offset-aware datetimes"), and a naive ``slaDeadline`` in ``task.sla_warning`` /
``task.sla_breached`` (contract §1.6 ``TaskSlaPayload``) was read in the host's zone, shifting
the deadline shown by the host's UTC offset.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.discord.blockers import blocker_line, find_blockers
from bot.factory.events import TaskSlaPayload, parse_event
from escalation.models import Pipeline, Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("updated_at", ["2026-11-21T10:00:00", "2026-11-21T10:00:00Z"])
def test_blockers_list_a_failed_pipeline_dated_without_a_zone(updated_at: str) -> None:
    pipeline = Pipeline.model_validate(
        {
            "id": "p-1",
            "name": "Stripe MCP",
            "status": "failed",
            "currentStage": "testing",
            "updatedAt": updated_at,
        }
    )
    task = Task.model_validate(
        {"id": "t-1", "title": "Approve release", "createdAt": "2026-11-21T08:00:00"}
    )
    blockers = find_blockers(
        [task], [pipeline], now=NOW, deadline_for=lambda t: t.created_at + timedelta(hours=1)
    )
    assert [blocker_line(b) for b in blockers] == [
        "🟡 **Approve release** · **SLA breached** · blocked 4h 00m · `t-1`",
        "🟡 **Stripe MCP — testing failed** · **Stage failed — requires intervention**"
        " · blocked 2h 00m",
    ]


def test_an_sla_event_deadline_without_a_zone_is_utc() -> None:
    event = parse_event(
        {
            "type": "task.sla_breached",
            "timestamp": "2026-11-21T12:00:00Z",
            "channel": "tasks",
            "data": {
                "taskId": "t-1",
                "taskTitle": "Approve release",
                "slaDeadline": "2026-11-21T10:00:00",
                "minutesRemaining": 0,
            },
        }
    )
    assert isinstance(event.payload, TaskSlaPayload)
    deadline = event.payload.sla_deadline
    assert deadline == datetime(2026, 11, 21, 10, 0, tzinfo=UTC) and deadline.tzinfo is UTC
    assert deadline.timestamp() == 1795255200  # the instant shown to people (<t:…:R>)
