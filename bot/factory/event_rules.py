"""The event processor's rules about one event: is its failure permanent, what is it about (the
key that orders events about the same task or pipeline), and is it marked processed at once.

See :mod:`bot.factory.processor` for how they are used.
"""

from __future__ import annotations

from bot.factory.client import FactoryError
from bot.factory.events import (
    AgentStatusPayload,
    EventValidationError,
    FactoryEvent,
    UnknownEventType,
)

__all__ = [
    "MARKED_AT_ONCE_TYPES",
    "PERMANENT_STATUSES",
    "Parsed",
    "marked_at_once",
    "order_key",
    "permanent_reason",
]

#: An event as the processor gets it: parsed, or why its stored body does not parse.
Parsed = FactoryEvent | EventValidationError | UnknownEventType

#: HTTP statuses that will be the same on every retry: the request itself is refused
#: (contract §7.1 never retries 400, 404, 409, 410; 413 and 422 refuse the content).
PERMANENT_STATUSES = frozenset({400, 404, 409, 410, 413, 422})

#: Errors raised by values that cannot be processed: the same input fails the same way again.
_PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # includes pydantic's ValidationError and UnicodeError
    TypeError,
    LookupError,
    ArithmeticError,  # OverflowError: a date in year 9999 plus an SLA
    RecursionError,
)


def permanent_reason(exc: BaseException) -> str | None:
    """Why handling an event failed for good, or ``None`` when a retry may succeed.

    Parameters
    ----------
    exc:
        What handling the event raised.

    Returns
    -------
    str | None
        ``"refused by the factory (404 NOT_FOUND)"``-style text for a permanent error (see the
        module docstring), ``None`` for a transient one (``FactoryUnavailable``, 5xx, 401/403,
        a connection error, anything unknown).
    """
    if isinstance(exc, FactoryError):
        if exc.status in PERMANENT_STATUSES:
            return f"refused by the factory ({exc.status} {exc.code})"
        return None
    status = getattr(exc, "status", None)
    if status == 400 and type(exc).__module__.startswith("discord"):
        return "refused by Discord as malformed (400)"
    if isinstance(exc, _PERMANENT_ERRORS):
        return "cannot be processed"
    return None


#: Event types whose line goes to the alerts or deploys channel (:func:`bot.channel_map.
#: event_channels`; ``task.sla_breached`` through :mod:`bot.sla_events`). Low volume.
MARKED_AT_ONCE_TYPES = frozenset(
    {
        "pipeline.blocked",
        "pipeline.failed",
        "task.sla_breached",
        "deploy.started",
        "deploy.succeeded",
        "deploy.failed",
    }
)


def marked_at_once(event: Parsed) -> bool:
    """Whether the processor marks ``event`` processed as soon as it is handled, not with its run.

    Handling such an event posts a line that nothing recognises afterwards: a crash before the
    run's mark would post it again at the next start. Those are the types of
    :data:`MARKED_AT_ONCE_TYPES` and ``agent.status_changed`` to ``error``; not the feed's
    pipeline events (queued in memory, :mod:`bot.discord.feed`) nor task events (a task is
    never posted twice), which are many.

    Parameters
    ----------
    event:
        The event as the processor has it.

    Returns
    -------
    bool
        ``True`` for an event that posts an alert or deploy line.
    """
    if not isinstance(event, FactoryEvent):
        return False
    if event.type == "agent.status_changed":
        payload = event.payload
        return isinstance(payload, AgentStatusPayload) and payload.to_status.lower() == "error"
    return event.type in MARKED_AT_ONCE_TYPES


def order_key(event_id: str, event: Parsed) -> str:
    """What an event is about, for ordering: ``task:<id>``, ``pipeline:<id>`` or ``event:<id>``.

    Events with the same key are handled in arrival order (a later one waits while an earlier
    one is retried); events with different keys do not wait for each other.
    """
    if not isinstance(event, FactoryEvent):
        return f"event:{event_id}"
    # the payload's fields as stored (a pydantic model keeps them in __dict__): getattr() of a
    # field the payload type lacks makes pydantic build and raise an AttributeError each time
    fields = getattr(event.payload, "__dict__", {})
    task = fields.get("task")
    if task is not None and isinstance(getattr(task, "id", None), str):
        return f"task:{task.id}"
    approval = fields.get("approval")
    if approval is not None and isinstance(getattr(approval, "task_id", None), str):
        return f"task:{approval.task_id}"
    task_id = fields.get("task_id")
    if isinstance(task_id, str):
        return f"task:{task_id}"
    pipeline = fields.get("pipeline")
    if pipeline is not None and isinstance(getattr(pipeline, "id", None), str):
        return f"pipeline:{pipeline.id}"
    pipeline_id = fields.get("pipeline_id")
    if isinstance(pipeline_id, str):
        return f"pipeline:{pipeline_id}"
    return f"event:{event_id}"
