"""Domain types of the bridge, mapped from the factory contract.

Every type here mirrors an entity of the factory's canonical interface contract
(``shared/reference/001_32e99078c6aca818.txt`` §1.4). Field names are snake_case in Python and
camelCase on the wire (``slaDeadline``, ``assigneeId`` …); models accept either spelling and
ignore fields they do not know, so a newer factory does not break an older bridge.

This module imports nothing from Discord, Twilio or HTTP: it is the core's vocabulary.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "PRIORITY_ORDER",
    "TASK_ID_PATTERN",
    "Approval",
    "ContractModel",
    "DiffFile",
    "DiffSummary",
    "Pipeline",
    "PipelineStage",
    "Priority",
    "Task",
    "TaskContext",
    "TaskDecision",
    "TaskId",
    "TaskStatus",
    "TaskType",
    "TestFailure",
    "TestResults",
    "ensure_utc",
]


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    A naive datetime is taken to be UTC already (the contract's timestamps are ISO 8601 UTC).
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


#: What a task id may be: it travels in Discord custom ids (``fb:t:<action>:<id>``, 100
#: characters at most) and in factory URL path segments, so only ``[A-Za-z0-9_-]``; this also
#: rules out ``.`` and ``..``, which would change the URL's path.
TASK_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
#: A task id (1–64 characters of :data:`TASK_ID_PATTERN`).
TaskId = Annotated[str, Field(min_length=1, max_length=64, pattern=TASK_ID_PATTERN)]

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=StrEnum)


def _known_or(value: Any, enum: type[_E], default: _E, what: str) -> Any:
    """``value`` unchanged when ``enum`` knows it, else ``default`` (logged as a warning).

    For enum fields where a newer factory may send a value this bridge does not know
    (contract §1.4 enums grow): the item stays usable instead of failing validation. Use as
    a ``mode="before"`` validator; ``None`` is left to the field's own validation.
    """
    if value is None or isinstance(value, enum):
        return value
    try:
        return enum(value)
    except (ValueError, TypeError):
        log.warning("unknown %s %r: treated as %r", what, str(value)[:64], default.value)
        return default


class ContractModel(BaseModel):
    """Base for contract entities: camelCase on the wire, snake_case in Python, unknown keys ignored."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """Serialise to the contract's camelCase JSON shape (datetimes as ISO 8601 strings)."""
        return self.model_dump(mode="json", by_alias=True)


class Priority(StrEnum):
    """Task and pipeline priority (contract §1.4 ``Priority``)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


#: Sort rank of each priority, most urgent first (used by pending lists and blocker reports).
PRIORITY_ORDER: dict[Priority, int] = {
    Priority.CRITICAL: 0,
    Priority.HIGH: 1,
    Priority.MEDIUM: 2,
    Priority.LOW: 3,
}


class TaskStatus(StrEnum):
    """Where a task is in the decision queue (contract §1.4 ``TaskStatus``)."""

    PENDING = "pending"
    CLAIMED = "claimed"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    EXPIRED = "expired"
    ESCALATED = "escalated"

    @property
    def is_open(self) -> bool:
        """True while the task still waits for a decision."""
        return self is not TaskStatus.COMPLETED


class TaskType(StrEnum):
    """Kind of decision a task asks for (contract §1.4 ``TaskType``)."""

    APPROVAL = "approval"
    REVIEW = "review"
    DECISION = "decision"
    MANUAL_ACTION = "manual_action"
    FIX_REQUIRED = "fix_required"


class TaskDecision(StrEnum):
    """A decision on a task (contract §1.4 ``TaskDecision``)."""

    APPROVED = "approved"
    REJECTED = "rejected"
    DEFERRED = "deferred"
    ESCALATED = "escalated"


class PipelineStage(StrEnum):
    """Pipeline stages; ``review``, ``staging`` and ``production`` are human gates (contract §1.4)."""

    INTAKE = "intake"
    SCAFFOLDING = "scaffolding"
    BUILDING = "building"
    TESTING = "testing"
    REVIEW = "review"
    STAGING = "staging"
    PRODUCTION = "production"
    PUBLISHED = "published"


class TestFailure(ContractModel):
    """One failing test (contract §1.4 ``TestFailure``)."""

    __test__ = False  # not a pytest test class

    test_name: str
    error: str
    file: str | None = None
    line: int | None = None


class TestResults(ContractModel):
    """Test run summary attached to a task (contract §1.4 ``TestResults``)."""

    __test__ = False

    total: int = Field(ge=0)
    passed: int = Field(ge=0)
    failed: int = Field(ge=0)
    skipped: int = Field(default=0, ge=0)
    coverage_percent: float = Field(ge=0, le=100)
    failure_details: list[TestFailure] = Field(default_factory=list)


class DiffFile(ContractModel):
    """One changed file of a diff (contract §1.4 ``DiffFile``)."""

    path: str
    status: str
    insertions: int = 0
    deletions: int = 0
    patch: str | None = None


class DiffSummary(ContractModel):
    """What a change touches (contract §1.4 ``DiffSummary``)."""

    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0
    files: list[DiffFile] = Field(default_factory=list)


class TaskContext(ContractModel):
    """What is being decided and the evidence for it (contract §1.4 ``TaskContext``).

    ``metrics`` is free-form numbers from the factory; the bridge reads ``metrics["risk"]``
    (0 = low, 1 = medium, 2 = high) when the factory states a risk itself, and
    ``metrics["deploysToProduction"]`` (non-zero = yes) for the production safeguard.
    ``modal_config`` may also carry ``{"target": "production"}`` for the same purpose.
    """

    summary: str = ""
    details: str | None = None
    test_results: TestResults | None = None
    diff_summary: DiffSummary | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    related_assets: list[str] = Field(default_factory=list)
    modal_type: str | None = None
    modal_config: dict[str, Any] = Field(default_factory=dict)


class Task(ContractModel):
    """A decision-queue item (contract §1.4 ``Task``).

    All datetimes are aware UTC. ``sla_deadline`` may be ``None``: the bridge then derives the
    deadline from ``created_at`` and the SLA of the priority (see ``escalation.policy``).

    Enum values a newer factory may add are not errors (logged as warnings): an unknown
    ``priority`` is treated as ``high``, an unknown ``type`` as ``decision`` and an unknown
    ``status`` as ``pending`` (the task stays open until the factory reports a decision).
    """

    id: TaskId
    pipeline_id: str | None = None
    stage_name: PipelineStage | None = None
    type: TaskType = TaskType.APPROVAL
    title: str = Field(min_length=1)
    description: str | None = None
    context: TaskContext = Field(default_factory=TaskContext)
    status: TaskStatus = TaskStatus.PENDING
    priority: Priority = Priority.MEDIUM
    assignee_id: str | None = None
    claimed_at: datetime | None = None
    claimed_by: str | None = None
    decision: TaskDecision | None = None
    decision_notes: str | None = None
    decision_data: dict[str, Any] = Field(default_factory=dict)
    decided_at: datetime | None = None
    decided_by: str | None = None
    sla_deadline: datetime | None = None
    sla_warnings_sent: int = 0
    sla_breached: bool = False
    escalation_level: int = 0
    blocks_stage_advance: bool = False
    blocks_pipeline_id: str | None = None
    created_at: datetime
    updated_at: datetime | None = None

    @field_validator(
        "created_at", "updated_at", "sla_deadline", "claimed_at", "decided_at", mode="after"
    )
    @classmethod
    def _as_utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else ensure_utc(value)

    @field_validator("priority", mode="before")
    @classmethod
    def _known_priority(cls, value: Any) -> Any:
        # an unknown priority counts as high: posted alone at once and escalated, never
        # batched (a new "urgent" must not be treated as routine)
        return _known_or(value, Priority, Priority.HIGH, "task priority")

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any) -> Any:
        # an unknown kind is asked as a generic decision
        return _known_or(value, TaskType, TaskType.DECISION, "task type")

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        # an unknown status keeps the task open: waiting for a person until the factory
        # says it was decided (nothing falls through)
        return _known_or(value, TaskStatus, TaskStatus.PENDING, "task status")

    @property
    def is_open(self) -> bool:
        """True while the task still waits for a decision."""
        return self.status.is_open and self.decision is None


class Approval(ContractModel):
    """A human gate behind a task (contract §1.4 ``Approval``), the fields the bridge uses.

    ``type`` is the contract's ``ApprovalType`` (``stage_gate``, ``deploy``, ``code_review``,
    ``manual_check``), kept as text so that a newer factory's value is not an error (an
    unknown type is simply not ``deploy``). ``required_approvers`` is how many distinct people
    must approve (the two-person rule when 2 or more).
    """

    id: str = Field(min_length=1, max_length=200)
    task_id: TaskId
    pipeline_id: str | None = None
    stage_name: str | None = None
    type: str | None = None
    status: str = "pending"
    approved_by: str | None = None
    rejection_reason: str | None = None
    conditions: list[str] = Field(default_factory=list)
    required_approvers: int = Field(default=1, ge=0, le=100)
    current_approvers: int = Field(default=0, ge=0)


class Pipeline(ContractModel):
    """A pipeline building one MCP server (contract §1.4 ``Pipeline``), the fields the bridge uses."""

    id: str
    name: str
    slug: str | None = None
    platform: str | None = None
    current_stage: PipelineStage | None = None
    status: str = "active"
    priority: Priority = Priority.MEDIUM
    assignee_id: str | None = None
    sla_deadline: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
