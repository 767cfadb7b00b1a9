"""Which tasks may be batched: the batch key of a routine task.

What is batched
---------------
:func:`batch_key` gives a key for *routine* tasks only: priority ``medium`` or ``low`` and not a
production deploy (:func:`escalation.deploy_guard.is_guarded`). Tasks of the same key
(task type and pipeline stage, e.g. ``"review:review"``) may share a message; different keys are
never mixed. For a task whose key is ``None`` (critical, high, anything touching production) the
adapter posts the normal single-task message at once and never calls :class:`~batching.batcher.Batcher`.
"""

from __future__ import annotations

from escalation.deploy_guard import is_guarded
from escalation.models import Priority, Task, TaskType

__all__ = ["batch_key"]

_ROUTINE_PRIORITIES = frozenset({Priority.MEDIUM, Priority.LOW})
#: Task types a batch message can decide (approve / reject). A ``decision`` needs its option
#: picked and a ``manual_action`` / ``fix_required`` its work done (contract §1.4
#: ``TaskType``): those are always posted alone with their own controls.
_BATCHABLE_TYPES = frozenset({TaskType.APPROVAL, TaskType.REVIEW})


def batch_key(task: Task, *, guarded: bool | None = None) -> str | None:
    """Batch key of a routine task, ``None`` for a task that must be posted alone at once.

    Parameters
    ----------
    task : Task
        The new task.

    Returns
    -------
    str or None
        ``f"{task.type}:{task.stage_name or '-'}"`` (e.g. ``"review:review"``,
        ``"approval:-"``) when the task is routine: priority ``medium`` or ``low`` and not
        guarded (:func:`~escalation.deploy_guard.is_guarded`). ``None`` for critical and high
        tasks and for anything touching production (master plan §7: those are never delayed or
        bundled). ``guarded`` is the deploy guard's verdict when the caller knows the approval
        behind the task (:func:`escalation.deploy_guard.is_guarded`); ``None`` judges from
        the task alone. Only ``approval`` and ``review`` tasks are batched: the other types
        have controls of their own (an option select, "Done"), never "Approve All".
    """
    if guarded is None:
        guarded = is_guarded(task)
    if task.priority not in _ROUTINE_PRIORITIES or guarded or task.type not in _BATCHABLE_TYPES:
        return None
    return f"{task.type}:{task.stage_name or '-'}"
