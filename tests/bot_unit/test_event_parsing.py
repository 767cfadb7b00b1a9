"""An event of a known type is validated in one call; what it says is what two steps said.

:func:`parse_event` validates the envelope and the payload of a known type together. A valid
event gives the same typed payload as validating the envelope and then the payload; an invalid
one is refused with the same field and message as those two steps give.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bot.factory.events import (
    PAYLOADS,
    EventValidationError,
    PipelineStageChangedPayload,
    TaskPayload,
    WsEnvelope,
    parse_event,
)


def two_steps(raw: dict[str, Any]) -> tuple[str, str] | Any:
    """The envelope, then the payload: the payload, or (field, message) of the first error."""
    try:
        envelope = WsEnvelope.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        return ".".join(str(p) for p in err["loc"]), err["msg"]
    try:
        return PAYLOADS[envelope.type].model_validate(envelope.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        return "data." + ".".join(str(p) for p in err["loc"]), err["msg"]


STAGE = {
    "pipelineId": "p-1",
    "pipelineName": "mcp",
    "fromStage": "building",
    "toStage": "testing",
    "triggeredBy": "agent-1",
}
TASK = {"id": "t-1", "title": "Review", "createdAt": "2026-11-28T10:00:00Z"}
WHEN = "2026-11-28T10:00:00Z"


def test_a_valid_event_gives_the_payload_two_steps_give() -> None:
    for type_, data, model in (
        ("pipeline.stage_changed", STAGE, PipelineStageChangedPayload),
        ("task.created", {"task": TASK}, TaskPayload),
    ):
        raw = {"type": type_, "timestamp": WHEN, "channel": "c", "data": data, "more": 1}
        event = parse_event(raw)
        assert type(event.payload) is model
        assert event.payload == two_steps(raw)
        assert (event.type, event.channel, event.raw) == (type_, "c", raw)
        assert event.timestamp.isoformat() == "2026-11-28T10:00:00+00:00"


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "pipeline.stage_changed", "timestamp": WHEN, "data": [1]},
        {"type": "pipeline.stage_changed", "timestamp": WHEN, "data": "text"},
        {"type": "pipeline.stage_changed", "timestamp": "soon", "data": {}},
        {"type": "pipeline.stage_changed", "timestamp": WHEN},
        {"type": "pipeline.stage_changed", "timestamp": WHEN, "data": {**STAGE, "toStage": 5}},
        {"type": "pipeline.stage_changed", "timestamp": WHEN, "channel": 3, "data": STAGE},
        {"type": "task.created", "timestamp": WHEN, "data": {"task": {**TASK, "id": "a b"}}},
        {"type": "task.created", "timestamp": WHEN, "data": {"task": {"id": "t"}}},
    ],
)
def test_an_invalid_event_is_refused_as_two_steps_refuse_it(raw: dict[str, Any]) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(raw)
    assert (caught.value.field, caught.value.message) == two_steps(raw)
