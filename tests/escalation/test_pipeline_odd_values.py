"""A pipeline at a stage or priority this bridge does not know is still a pipeline.

Contract §1.4 enums grow: a newer factory may send ``currentStage: "security-scan"`` or
``priority: "urgent"``. As for a task, such a value is logged and replaced (an unknown
priority counts as ``high``, an unknown stage as no known stage), never a reason to drop the
pipeline from ``/factory pipelines`` or ``/factory blockers``.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from escalation.models import Pipeline, PipelineStage, Priority


def raw(**fields: Any) -> dict[str, Any]:
    return {"id": "pl-new", "name": "stripe-mcp", "status": "failed", **fields}


def test_a_new_stage_is_read_as_no_known_stage_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="escalation.models")
    pipeline = Pipeline.model_validate(raw(currentStage="security-scan", priority="low"))
    assert pipeline.current_stage is None
    assert (pipeline.name, pipeline.status, pipeline.priority) == (
        "stripe-mcp",
        "failed",
        Priority.LOW,
    )
    [record] = [r for r in caplog.records if r.name == "escalation.models"]
    assert record.levelno == logging.WARNING
    assert "pipeline pl-new" in record.getMessage() and "security-scan" in record.getMessage()


@pytest.mark.parametrize("priority", ["urgent", "P0", None, 3])
def test_a_new_priority_counts_as_high(priority: object) -> None:
    pipeline = Pipeline.model_validate(raw(currentStage="review", priority=priority))
    assert pipeline.priority is Priority.HIGH
    assert pipeline.current_stage is PipelineStage.REVIEW


def test_known_values_and_no_stage_are_kept_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="escalation.models")
    staged = Pipeline.model_validate(raw(currentStage="production", priority="critical"))
    assert staged.current_stage is PipelineStage.PRODUCTION
    assert staged.priority is Priority.CRITICAL
    assert Pipeline.model_validate(raw(currentStage=None)).current_stage is None
    assert Pipeline.model_validate(raw()).priority is Priority.MEDIUM
    assert [r for r in caplog.records if r.name == "escalation.models"] == []
