"""Every time in a contract entity is aware UTC (factory contract §1.4: ISO 8601 UTC).

A time without a zone is UTC in every model, not only in ``Task``: a naive ``Pipeline.updatedAt``
mixed with the aware clock of the bridge broke ``/factory blockers``. A time with an offset is
converted to UTC; one past year 9999 once in UTC is the last instant.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from escalation.models import Pipeline, Task
from escalation.policy import LAST_INSTANT

AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "attribute"),
    [("updatedAt", "updated_at"), ("createdAt", "created_at"), ("slaDeadline", "sla_deadline")],
)
def test_a_pipeline_time_without_a_zone_is_utc(field: str, attribute: str) -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p-1", "name": "Stripe MCP", field: "2026-11-21T10:00:00"}
    )
    value = getattr(pipeline, attribute)
    assert value == AT and value.tzinfo is UTC
    assert AT - value == timedelta(0)  # comparable with the bridge's aware clock


def test_a_pipeline_time_with_an_offset_is_converted_to_utc() -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p-1", "name": "Stripe MCP", "updatedAt": "2026-11-21T11:00:00+01:00"}
    )
    assert pipeline.updated_at == AT and pipeline.updated_at.tzinfo is UTC


def test_a_pipeline_time_past_year_9999_in_utc_is_the_last_instant() -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p-1", "name": "Stripe MCP", "slaDeadline": "9999-12-31T23:59:59-05:00"}
    )
    assert pipeline.sla_deadline == LAST_INSTANT


def test_a_model_built_in_python_is_normalised_too() -> None:
    local = datetime(2026, 11, 21, 5, 0, tzinfo=timezone(timedelta(hours=-5)))
    pipeline = Pipeline(
        id="p-1", name="Stripe MCP", created_at=local, updated_at=AT.replace(tzinfo=None)
    )
    assert pipeline.created_at == AT and pipeline.created_at.tzinfo is UTC
    assert pipeline.updated_at == AT and pipeline.updated_at.tzinfo is UTC


def test_every_task_time_is_aware_utc() -> None:
    task = Task.model_validate(
        {
            "id": "t-1",
            "title": "Release",
            "createdAt": "2026-11-21T10:00:00",
            "updatedAt": "2026-11-21T10:00:00",
            "slaDeadline": "2026-11-21T11:00:00+01:00",
            "claimedAt": "2026-11-21T10:00:00Z",
            "decidedAt": "2026-11-21T10:00:00",
        }
    )
    for value in (
        task.created_at,
        task.updated_at,
        task.sla_deadline,
        task.claimed_at,
        task.decided_at,
    ):
        assert value == AT and value.tzinfo is UTC
