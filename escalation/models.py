"""Domain types of the bridge, mapped from the factory contract.

Every type here mirrors an entity of the factory's canonical interface contract
(``shared/reference/001_32e99078c6aca818.txt`` §1.4). Field names are snake_case in Python and
camelCase on the wire (``slaDeadline``, ``assigneeId`` …); models accept either spelling and
ignore fields they do not know, so a newer factory does not break an older bridge.

This module imports nothing from Discord, Twilio or HTTP: it is the core's vocabulary.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AliasGenerator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

__all__ = [
    "FIRST_INSTANT",
    "LAST_INSTANT",
    "LENIENT_TASK_FIELDS",
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
    "UtcDatetime",
    "ensure_utc",
]


#: The first and last instants a ``datetime`` in UTC can hold (years 1 and 9999). An instant
#: past one of them (e.g. ``9999-12-31T23:00:00-05:00``, or a deadline of
#: ``9999-12-31T23:59:59Z``, a common "no deadline" value, plus an SLA) is taken as this one:
#: the core never lets ``OverflowError`` out of a computation on times.
FIRST_INSTANT = datetime.min.replace(tzinfo=UTC)
LAST_INSTANT = datetime.max.replace(tzinfo=UTC)


def ensure_utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime.

    A naive datetime is taken to be UTC already (the contract's timestamps are ISO 8601 UTC,
    factory contract §1.4). An instant past year 9999 once in UTC (e.g.
    ``9999-12-31T23:59:59-05:00``, a "no deadline" value) is the last instant a ``datetime``
    holds, as in :func:`escalation.policy.as_aware_utc`: never due, not an error.

    Raises
    ------
    OverflowError
        When the instant is before year 1 once in UTC (e.g. ``0001-01-01T00:00:00+01:00``).
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        offset = value.utcoffset()
        if offset is not None and offset < timedelta(0):  # past year 9999 in UTC
            return LAST_INSTANT
        raise


def _in_utc(value: datetime) -> datetime:
    # pydantic's after-validator for UtcDatetime: an instant before year 1 in UTC is a
    # validation error with a reason, not an OverflowError out of model_validate
    try:
        return ensure_utc(value)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise ValueError("datetime out of range once in UTC") from None


#: The type of every datetime field of a contract model: aware UTC after validation
#: (:func:`ensure_utc`; factory contract §1.4 timestamps are ISO 8601 UTC). A naive value is
#: UTC, an offset is converted, one past year 9999 in UTC is :data:`LAST_INSTANT`, one before
#: year 1 in UTC is a validation error. Only the fields so typed pay for the check (a
#: validator on every field was one Python call per field of every task read).
UtcDatetime = Annotated[datetime, AfterValidator(_in_utc)]


#: What a task id may be: it travels in Discord custom ids (``fb:t:<action>:<id>``, 100
#: characters at most) and in factory URL path segments, so only ``[A-Za-z0-9_-]``; this also
#: rules out ``.`` and ``..``, which would change the URL's path.
TASK_ID_PATTERN = r"^[A-Za-z0-9_-]+$"
#: A task id (1–64 characters of :data:`TASK_ID_PATTERN`).
TaskId = Annotated[str, Field(min_length=1, max_length=64, pattern=TASK_ID_PATTERN)]

log = logging.getLogger(__name__)

_E = TypeVar("_E", bound=StrEnum)


def _task_of(info: ValidationInfo) -> str:
    """The id of the task being validated, for a log line (``?`` when the id is unreadable)."""
    return str(info.data.get("id", "?"))[:64]


def _known_or(
    value: Any,
    enum: type[_E],
    default: _E | None,
    what: str,
    task_id: str = "?",
    *,
    kind: str = "task",
) -> Any:
    """``value`` unchanged when ``enum`` knows it, else ``default`` (logged as a warning).

    For enum fields where a newer factory may send a value this bridge does not know
    (contract §1.4 enums grow): the item stays usable instead of failing validation. A
    ``null`` is treated the same way (the field has a default; an odd value must not hide the
    task, contract §1.4 ``Task``). Use as a ``mode="before"`` validator. ``kind`` and
    ``task_id`` name the item in the log line (``task``, ``pipeline``).
    """
    if isinstance(value, enum):
        return value
    try:
        return enum(value)
    except (ValueError, TypeError):
        log.warning(
            "%s %s: unknown %s %r: treated as %r",
            kind,
            task_id,
            what,
            str(value)[:64],
            None if default is None else default.value,
        )
        return default


#: The optional :class:`Task` fields: ``string | null`` in contract §1.4 ``Task``, or
#: bookkeeping the bridge has a default for (``decisionData``, ``slaWarningsSent``,
#: ``slaBreached``, ``escalationLevel``, ``blocksStageAdvance``, ``updatedAt``). A value of
#: one the bridge cannot read is treated as missing (``None``, ``{}``, ``0``, ``False``),
#: logged as a warning. Not among them: the required ``id``, ``title`` and ``createdAt``;
#: ``decision`` (what was decided is never guessed); ``stageName`` and ``context`` (they carry
#: the production safeguard and the risk, :mod:`escalation.deploy_guard` and
#: :mod:`escalation.risk`, which must never be dropped silently).
LENIENT_TASK_FIELDS = (
    "pipeline_id",
    "description",
    "assignee_id",
    "claimed_at",
    "claimed_by",
    "decision_notes",
    "decision_data",
    "decided_at",
    "decided_by",
    "sla_deadline",
    "sla_warnings_sent",
    "sla_breached",
    "escalation_level",
    "blocks_stage_advance",
    "blocks_pipeline_id",
    "updated_at",
)
#: How those fields may be spelt in what the factory sends (camelCase, or snake_case).
_LENIENT_KEYS = frozenset(LENIENT_TASK_FIELDS) | {to_camel(f) for f in LENIENT_TASK_FIELDS}


class ContractModel(BaseModel):
    """Base for contract entities: camelCase on the wire, snake_case in Python, unknown keys ignored.

    Every datetime field of every contract model is typed :data:`UtcDatetime`, so it is aware
    UTC (:func:`ensure_utc`): one without a zone is UTC (contract §1.4 timestamps are ISO 8601
    UTC), one past year 9999 once in UTC is the last instant; one before year 1 once in UTC
    cannot be read (a validation error). ``tests/escalation/test_contract_times_utc.py`` checks
    that no contract model has a plain ``datetime`` field.
    """

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

    An optional field the bridge cannot read (:data:`LENIENT_TASK_FIELDS`, e.g. a
    ``slaDeadline`` of ``"in 2 hours"``, a ``decisionData`` that is not an object) is treated
    as missing, logged as a warning naming the task and the field: one odd field must not hide
    the task, nor fail the factory's answer to a decision or an event. A missing
    ``slaDeadline`` means the policy's deadline (``createdAt`` + the SLA of the priority,
    contract §5.3). A task whose ``id``, ``title`` or ``createdAt`` cannot be read still fails
    validation. A ``null`` ``priority``, ``type`` or ``status`` counts as an unknown value.
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
    claimed_at: UtcDatetime | None = None
    claimed_by: str | None = None
    decision: TaskDecision | None = None
    decision_notes: str | None = None
    decision_data: dict[str, Any] = Field(default_factory=dict)
    decided_at: UtcDatetime | None = None
    decided_by: str | None = None
    sla_deadline: UtcDatetime | None = None
    sla_warnings_sent: int = 0
    sla_breached: bool = False
    escalation_level: int = 0
    blocks_stage_advance: bool = False
    blocks_pipeline_id: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime | None = None

    @model_validator(mode="wrap")
    @classmethod
    def _readable_or_missing(cls, data: Any, handler: ModelWrapValidatorHandler[Task]) -> Task:
        # an optional field that cannot be read is treated as missing, never hides the task;
        # one Python call per task, only the failing ones do more (100,000 tasks at start)
        try:
            return handler(data)
        except ValidationError as exc:
            if not isinstance(data, dict):
                raise
            unreadable: dict[str, str] = {}
            for error in exc.errors():
                key = error["loc"][0] if error["loc"] else None
                if key not in _LENIENT_KEYS:
                    raise  # a required (or guarded) field: the task cannot be read
                unreadable.setdefault(str(key), error["msg"])
            for key, reason in unreadable.items():
                log.warning(
                    "task %s: %s %r cannot be read (%s): treated as missing",
                    str(data.get("id", "?"))[:64],
                    to_camel(key),
                    str(data.get(key))[:64],
                    reason[:200],
                )
            return handler({k: v for k, v in data.items() if k not in unreadable})

    @field_validator("priority", mode="before")
    @classmethod
    def _known_priority(cls, value: Any, info: ValidationInfo) -> Any:
        # an unknown priority counts as high: posted alone at once and escalated, never
        # batched (a new "urgent" must not be treated as routine)
        return _known_or(value, Priority, Priority.HIGH, "task priority", _task_of(info))

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: Any, info: ValidationInfo) -> Any:
        # an unknown kind is asked as a generic decision
        return _known_or(value, TaskType, TaskType.DECISION, "task type", _task_of(info))

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: Any, info: ValidationInfo) -> Any:
        # an unknown status keeps the task open: waiting for a person until the factory
        # says it was decided (nothing falls through)
        return _known_or(value, TaskStatus, TaskStatus.PENDING, "task status", _task_of(info))

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
    """A pipeline building one MCP server (contract §1.4 ``Pipeline``), the fields the bridge uses.

    As for :class:`Task`, enum values a newer factory may add are not errors (logged as
    warnings): an unknown ``priority`` is treated as ``high`` (a pipeline at a new ``urgent``
    is not listed as routine) and an unknown ``currentStage`` (a new ``security-scan``) as no
    known stage (``None``). ``status`` is already any text. So a failed pipeline at a stage
    or priority this bridge does not know is still listed by ``/factory pipelines`` and
    ``/factory blockers`` instead of being left out (contract §1.4 enums grow).
    """

    id: str
    name: str
    slug: str | None = None
    platform: str | None = None
    current_stage: PipelineStage | None = None
    status: str = "active"
    priority: Priority = Priority.MEDIUM
    assignee_id: str | None = None
    sla_deadline: UtcDatetime | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _known_priority(cls, value: Any, info: ValidationInfo) -> Any:
        # an unknown priority counts as high, as for a task (a new "urgent" is not routine)
        return _known_or(
            value, Priority, Priority.HIGH, "priority", _task_of(info), kind="pipeline"
        )

    @field_validator("current_stage", mode="before")
    @classmethod
    def _known_stage(cls, value: Any, info: ValidationInfo) -> Any:
        # an unknown stage is no known stage: the pipeline is still listed (stage shown as
        # unknown); a null is simply no stage
        if value is None:
            return None
        return _known_or(value, PipelineStage, None, "stage", _task_of(info), kind="pipeline")
