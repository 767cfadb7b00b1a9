"""Factory events: the ``WsEvent`` envelope and the payload of each type the bridge handles.

Source: contract §1.6 (``WsEvent``, ``WebSocketEventType`` and the payload interfaces). The same
models validate events from the signed webhook and from the WebSocket stream. A document the
bridge cannot take (``NaN``, nesting over 64 levels, lone surrogates …, see
:mod:`bot.factory.strict_json`) and a task id outside ``[A-Za-z0-9_-]`` fail validation too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from bot.factory.strict_json import UnacceptableJson, check_document
from escalation.models import (
    Approval,
    ContractModel,
    Pipeline,
    Task,
    TaskDecision,
    TaskId,
    UtcDatetime,
)

__all__ = [
    "KNOWN_EVENT_TYPES",
    "AgentStatusPayload",
    "ApprovalPayload",
    "DeployPayload",
    "EventValidationError",
    "FactoryEvent",
    "PipelineBlockedPayload",
    "PipelinePayload",
    "PipelineStageChangedPayload",
    "TaskCompletedPayload",
    "TaskPayload",
    "TaskSlaPayload",
    "UnknownEventType",
    "WsEnvelope",
    "parse_event",
]


class WsEnvelope(BaseModel):
    """``WsEvent`` (contract §1.6): ``{"type", "timestamp", "channel", "data"}``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: str = Field(min_length=1, max_length=64)
    timestamp: datetime
    channel: str = ""
    data: dict[str, Any]


class TaskPayload(ContractModel):
    """``{task}``: task.created, task.claimed, task.escalated (``TaskCreatedPayload``)."""

    task: Task


class TaskCompletedPayload(ContractModel):
    """task.completed: ``{task, decision, decidedBy}`` (``TaskCompletedPayload``)."""

    task: Task
    decision: TaskDecision
    decided_by: str


#: The ``Approval`` of an approval event (contract §1.4); see :class:`escalation.models.Approval`.
ApprovalRef = Approval


class ApprovalPayload(ContractModel):
    """approval.pending / approval.approved / approval.rejected.

    The contract names these events without a payload interface; the bridge accepts
    ``{approval, task?}``. When ``task`` is absent the bridge fetches it by ``approval.taskId``.
    """

    approval: ApprovalRef
    task: Task | None = None


class TaskSlaPayload(ContractModel):
    """task.sla_warning / task.sla_breached (``TaskSlaPayload``)."""

    task_id: TaskId
    task_title: str
    pipeline_id: str | None = None
    sla_deadline: UtcDatetime
    minutes_remaining: float
    escalation_level: int = 0


class PipelinePayload(ContractModel):
    """pipeline.created / pipeline.completed / pipeline.failed: ``{pipeline, reason?}``."""

    pipeline: Pipeline
    reason: str | None = None


class PipelineStageChangedPayload(ContractModel):
    """pipeline.stage_changed (``PipelineStageChangedPayload``)."""

    pipeline_id: str
    pipeline_name: str
    from_stage: str
    to_stage: str
    triggered_by: str


class PipelineBlockedPayload(ContractModel):
    """pipeline.blocked (``PipelineBlockedPayload``)."""

    pipeline_id: str
    pipeline_name: str
    blocked_at: str
    reason: str
    task_id: TaskId


class DeployPayload(ContractModel):
    """deploy.started / deploy.succeeded / deploy.failed (``DeployPayload``)."""

    pipeline_id: str
    pipeline_name: str
    target: str
    version: str
    status: str
    url: str | None = None
    error: str | None = None


class AgentStatusPayload(ContractModel):
    """agent.status_changed (``AgentStatusPayload``); statuses are contract ``AgentStatus``
    (``idle``, ``active``, ``error``, ``offline``), kept as text so a new one is not refused."""

    agent_id: str
    agent_name: str
    from_status: str
    to_status: str
    current_task_id: str | None = None


PAYLOADS: dict[str, type[ContractModel]] = {
    "task.created": TaskPayload,
    "task.claimed": TaskPayload,
    "task.escalated": TaskPayload,
    "task.completed": TaskCompletedPayload,
    "task.sla_warning": TaskSlaPayload,
    "task.sla_breached": TaskSlaPayload,
    "approval.pending": ApprovalPayload,
    "approval.approved": ApprovalPayload,
    "approval.rejected": ApprovalPayload,
    "pipeline.created": PipelinePayload,
    "pipeline.completed": PipelinePayload,
    "pipeline.failed": PipelinePayload,
    "pipeline.stage_changed": PipelineStageChangedPayload,
    "pipeline.blocked": PipelineBlockedPayload,
    "deploy.started": DeployPayload,
    "deploy.succeeded": DeployPayload,
    "deploy.failed": DeployPayload,
    "agent.status_changed": AgentStatusPayload,
}

#: Event types the bridge acts on. Other contract types are accepted and ignored.
KNOWN_EVENT_TYPES = frozenset(PAYLOADS)

#: Per known type, the envelope with its payload model as ``data``: a valid event of that type
#: is validated in one call instead of two. Whatever it refuses is validated again in two
#: steps (:func:`parse_event`), so the error reported is the one those steps give.
_WHOLE_EVENT: dict[str, type[WsEnvelope]] = {
    type_: create_model(f"{model.__name__}Event", __base__=WsEnvelope, data=(model, ...))
    for type_, model in PAYLOADS.items()
}


class EventValidationError(ValueError):
    """An event failed validation; ``field`` is the dotted path of the first bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownEventType(Exception):
    """A well-formed event of a type the bridge does not handle (accepted and ignored)."""

    def __init__(self, type_: str) -> None:
        super().__init__(f"event type {type_!r} is not handled by the bridge")
        self.type = type_


class FactoryEvent(BaseModel):
    """A validated event: the envelope plus its typed payload."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    type: str
    timestamp: datetime
    channel: str
    payload: Any
    raw: dict[str, Any]


def _first_error(exc: ValidationError, prefix: str) -> EventValidationError:
    err = exc.errors()[0]
    path = ".".join(str(p) for p in err["loc"])
    return EventValidationError(f"{prefix}{path}" if path else prefix.rstrip("."), err["msg"])


def parse_event(raw: object, *, check: bool = True) -> FactoryEvent:
    """Validate a decoded ``WsEvent`` JSON document.

    Parameters
    ----------
    raw:
        The decoded document.
    check:
        Walk it with :func:`bot.factory.strict_json.check_document` first. ``False`` only
        when the caller decoded it with :func:`bot.factory.strict_json.loads` and
        :func:`bot.factory.strict_json.document_needs_check` said that the walk cannot refuse
        it (the webhook and Redis Streams intakes): then nothing is left for the walk to find.

    Raises
    ------
    EventValidationError
        When the document is one the bridge cannot take (:func:`bot.factory.strict_json.
        check_document`), or the envelope or the payload of a known type is malformed
        (``field`` names it, e.g. ``data.task.createdAt``, ``data.task.id``).
    UnknownEventType
        When the envelope is valid but the type is not one the bridge handles.
    """
    if not isinstance(raw, dict):
        raise EventValidationError("body", "expected a JSON object (WsEvent)")
    if check:
        try:
            check_document(raw)
        except UnacceptableJson as exc:
            raise EventValidationError(exc.field or "body", exc.message) from None
    whole = _WHOLE_EVENT.get(raw["type"]) if isinstance(raw.get("type"), str) else None
    if whole is not None:
        try:
            event = whole.model_validate(raw)
        except ValidationError:
            pass  # the two steps below name the first error, as they always did
        else:
            return FactoryEvent(
                type=event.type,
                timestamp=event.timestamp,
                channel=event.channel,
                payload=event.data,
                raw=raw,
            )
    try:
        envelope = WsEnvelope.model_validate(raw)
    except ValidationError as exc:
        raise _first_error(exc, "") from None
    model = PAYLOADS.get(envelope.type)
    if model is None:
        raise UnknownEventType(envelope.type)
    try:
        payload = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise _first_error(exc, "data.") from None
    return FactoryEvent(
        type=envelope.type,
        timestamp=envelope.timestamp,
        channel=envelope.channel,
        payload=payload,
        raw=raw,
    )
