"""What each task type asks of a person, and the options of a ``decision`` task.

Factory contract §1.4 ``TaskType``: ``approval`` and ``review`` are approved or rejected;
``decision`` is "choose between options", the options coming from
``context.modalConfig.options`` (items are strings or objects ``{"value", "label",
"description"?}``); ``manual_action`` and ``fix_required`` ask a person to do something and
say it is done.

The options are read defensively: they end up in a Discord string select, which takes at most
25 options whose label, value and description are at most 100 characters each, values unique
(Discord: "Component Reference", String Select). An item that does not fit is skipped and the
reason returned, so the message can say so; it is never an error.

Pure: no Discord, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from escalation.models import Task, TaskType

__all__ = [
    "ACTION_TITLES",
    "OPTIONS_MAX",
    "OPTION_DESCRIPTION_MAX",
    "OPTION_LABEL_MAX",
    "OPTION_VALUE_MAX",
    "DecisionOption",
    "DecisionOptions",
    "command_refusal",
    "decision_options",
    "is_done_task",
]

#: Discord: a string select offers at most 25 options.
OPTIONS_MAX = 25
#: Discord: a select option's label, value and description are at most 100 characters each.
OPTION_LABEL_MAX = 100
OPTION_VALUE_MAX = 100
OPTION_DESCRIPTION_MAX = 100

#: The title prefix of a task that asks for work, not a verdict (contract §1.4 ``TaskType``).
ACTION_TITLES: dict[TaskType, str] = {
    TaskType.MANUAL_ACTION: "🛠️ Manual action required",
    TaskType.FIX_REQUIRED: "🔧 Fix required",
}


class DecisionOption(BaseModel):
    """One option of a ``decision`` task: what the factory gets back (``value``, ``label``)
    and what the select shows (``label``, ``description``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    value: str = Field(min_length=1, max_length=OPTION_VALUE_MAX)
    label: str = Field(min_length=1, max_length=OPTION_LABEL_MAX)
    description: str | None = None

    def to_wire(self) -> dict[str, str]:
        """``{"value", "label"}``: the option as sent in ``decisionData.option``."""
        return {"value": self.value, "label": self.label}


@dataclass(frozen=True)
class DecisionOptions:
    """The usable options of a task and why the others were left out (one line each)."""

    options: tuple[DecisionOption, ...] = ()
    skipped: tuple[str, ...] = ()

    def find(self, value: str) -> DecisionOption | None:
        """The option whose ``value`` is ``value``, else ``None``."""
        return next((o for o in self.options if o.value == value), None)


def _item(raw: Any) -> DecisionOption:
    """One raw item as an option (a string is its own value and label).

    Raises
    ------
    ValueError
        When the item is neither a non-empty string nor an object with a usable value.
    """
    if isinstance(raw, str):
        text = raw.strip()
        return DecisionOption(value=text, label=text)
    if not isinstance(raw, dict):
        raise ValueError(f"not a string or an object ({type(raw).__name__})")
    value = raw.get("value")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("no text value")
    value = str(value).strip()
    label = raw.get("label")
    label = label.strip() if isinstance(label, str) and label.strip() else value
    description = raw.get("description")
    if isinstance(description, str) and description.strip():
        description = description.strip()
        if len(description) > OPTION_DESCRIPTION_MAX:
            description = description[: OPTION_DESCRIPTION_MAX - 1] + "…"
    else:
        description = None
    return DecisionOption(value=value, label=label, description=description)


def decision_options(task: Task) -> DecisionOptions:
    """The options of a ``decision`` task from ``context.modalConfig.options``.

    Items that cannot be offered are skipped with a reason: not a string or an object, an empty
    or over-long (> 100 characters) value or label, a value seen before, or beyond the 25th
    usable option (Discord's select limits). A description longer than 100 characters is
    shortened with "…". Any other task type, or a missing or non-list ``options``, gives none.
    """
    if task.type is not TaskType.DECISION:
        return DecisionOptions()
    raw = task.context.modal_config.get("options")
    if not isinstance(raw, list):
        return DecisionOptions()
    options: list[DecisionOption] = []
    skipped: list[str] = []
    seen: set[str] = set()
    for index, item in enumerate(raw, start=1):
        try:
            option = _item(item)
        except (ValueError, ValidationError) as exc:
            problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            skipped.append(f"option {index}: {problem}")
            continue
        if option.value in seen:
            skipped.append(f"option {index}: value {option.value[:40]!r} given twice")
            continue
        if len(options) >= OPTIONS_MAX:
            skipped.append(f"option {index}: more than {OPTIONS_MAX} options")
            continue
        seen.add(option.value)
        options.append(option)
    return DecisionOptions(tuple(options), tuple(skipped))


def is_done_task(task: Task) -> bool:
    """True for a task that asks for work (``manual_action``, ``fix_required``): it is
    answered with "Done" or acknowledged, never rejected."""
    return task.type in ACTION_TITLES


def command_refusal(task: Task, decision: str, *, guarded: bool) -> str | None:
    """Why a typed command (``/factory approve|reject``) may not take ``decision`` on
    ``task``, or ``None``: a command offers what the task's own controls offer, no more
    (README "Task types", contract §1.4 ``TaskType``).

    - Approving a ``decision`` task with usable options is choosing one of them: a bare
      approval would reach the factory without ``decisionData.option`` (a production deploy
      is the exception: it is never decided through the option menu, ``guarded``).
    - A ``decision`` task with options, a ``manual_action`` and a ``fix_required`` task have no
      Reject (the latter two are done, or acknowledged).

    Parameters
    ----------
    task:
        The task as the factory described it.
    decision:
        ``"approved"`` or ``"rejected"`` (contract §1.4 ``TaskDecision``).
    guarded:
        True when the task is a production deploy (:mod:`escalation.deploy_guard`).
    """
    choosing = not guarded and bool(decision_options(task).options)
    if decision == "approved" and choosing:
        return (
            "This task is decided by choosing one of its options: pick it in the "
            "🗳️ Choose an option… menu on the task's message."
        )
    if decision == "rejected" and (choosing or is_done_task(task)):
        return (
            "This kind of task has no Reject: "
            + ("choose an option on its message" if choosing else "mark it ✅ Done")
            + ", or acknowledge it."
        )
    return None
