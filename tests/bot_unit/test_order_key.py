"""What an event is about, for the processor's ordering (:func:`bot.factory.processor.order_key`):
one key per task or pipeline, whatever the payload type names it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from bot.factory.events import (
    AgentStatusPayload,
    ApprovalPayload,
    EventValidationError,
    FactoryEvent,
    PipelineBlockedPayload,
    PipelinePayload,
    PipelineStageChangedPayload,
    TaskPayload,
    TaskSlaPayload,
)
from bot.factory.processor import order_key


def event(payload: Any) -> FactoryEvent:
    return FactoryEvent.model_construct(
        type="x", timestamp=datetime(2026, 1, 1, tzinfo=UTC), channel="c", payload=payload, raw={}
    )


@pytest.mark.parametrize(
    ("payload", "key"),
    [
        (TaskPayload.model_construct(task=SimpleNamespace(id="T1")), "task:T1"),
        (
            ApprovalPayload.model_construct(approval=SimpleNamespace(task_id="T2"), task=None),
            "task:T2",
        ),
        (
            ApprovalPayload.model_construct(
                approval=SimpleNamespace(task_id="T2"), task=SimpleNamespace(id="T3")
            ),
            "task:T3",
        ),
        (TaskSlaPayload.model_construct(task_id="T4", pipeline_id="P0"), "task:T4"),
        (PipelineBlockedPayload.model_construct(task_id="T5", pipeline_id="P1"), "task:T5"),
        (PipelinePayload.model_construct(pipeline=SimpleNamespace(id="P2")), "pipeline:P2"),
        (PipelineStageChangedPayload.model_construct(pipeline_id="P3"), "pipeline:P3"),
        (AgentStatusPayload.model_construct(agent_id="a"), "event:e1"),
    ],
)
def test_the_key_names_the_task_or_pipeline(payload: Any, key: str) -> None:
    assert order_key("e1", event(payload)) == key


def test_an_event_that_did_not_parse_is_its_own_key() -> None:
    assert order_key("e9", EventValidationError("data", "bad")) == "event:e9"
