"""What a ladder step delivers, to whom, in what order, and when a delivery stops.

Pure rules (no clock, no I/O) used by :mod:`escalation.service`; who is reached through what
comes from :mod:`escalation.recipients`. The channels (contract Appendix B):

``dm``
    a reminder DM to one person (bundled: see :mod:`escalation.bundling`);
``reply``
    a reply to the task message (the reminder @mention and the SLA warning);
``alert``
    the SLA breach alert in the alerts channel;
``sms``
    an SMS to one person (bundled);
``call``
    one phone call (critical step; never bundled);
``reassign``
    the factory reassigns the task to an admin (critical step);
``decision``
    the safe default decision ``ESCALATION_SAFE_DEFAULT`` (critical step);
``incident``
    the incident report in the alerts channel (critical step, last).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from escalation.ladder import StepDue
from escalation.policy import REMINDER_STEPS, SafeDefault, StepKind
from escalation.recipients import (
    Person,
    call_order,
    next_fallback,
    reminder_targets,
    sms_targets,
)

__all__ = [
    "BUNDLED_CHANNELS",
    "CHANNEL_RANK",
    "NewDelivery",
    "next_own",
    "plan_deliveries",
    "stop_reason",
]

#: Person-addressed channels that go through the bundler (rule: "DMs and SMS are bundled").
BUNDLED_CHANNELS: tuple[str, ...] = ("dm", "sms")

#: Order of a step's own deliveries (contract Appendix B: call, reassign, safe default, incident report).
CHANNEL_RANK: dict[str, int] = {
    "reply": 0,
    "alert": 1,
    "call": 2,
    "reassign": 3,
    "decision": 4,
    "incident": 5,
}


@dataclass(frozen=True)
class NewDelivery:
    """A delivery planned by a step: through ``channel`` to ``recipient`` (held: digest).

    Attributes
    ----------
    channel
        One of the channels of this module's docstring.
    recipient
        A :attr:`escalation.recipients.Person.key`, or ``task`` / ``alerts`` for a post, or
        the safe-default decision for ``decision``.
    held
        The step was held for quiet hours: the delivery goes out in the morning digest.
    detail
        Stored with the delivery (e.g. ``fallback_for``), or ``None``.
    """

    channel: str
    recipient: str
    held: bool = False
    detail: dict[str, Any] | None = None


def plan_deliveries(
    step: StepDue,
    *,
    people: Sequence[Person],
    assignee: Person | None,
    unreachable: Collection[str],
    safe_default: SafeDefault,
) -> list[NewDelivery]:
    """The deliveries of ``step`` (who, through what), in the order they are written.

    Parameters
    ----------
    step
        The step being taken (its ``held_for_quiet_hours`` marks every delivery held).
    people
        The roster, in file order.
    assignee
        The task's assignee when the roster maps it, else ``None``.
    unreachable
        Phones that must not be texted or called (Twilio 21610, persisted).
    safe_default
        ``ESCALATION_SAFE_DEFAULT``: ``none`` plans no decision.

    Returns
    -------
    list of NewDelivery
        Reminder DM: one ``dm`` per reminder target. Reminder @mention and SLA warning: one
        ``reply``. SLA breach: the ``alert``, then one ``sms`` per reachable target.
        Critical: the first reachable on-call ``call``, ``reassign`` to the first admin with
        a factory id, the safe-default ``decision`` (unless ``none``), the ``incident`` report.
    """
    held = step.held_for_quiet_hours
    kind = step.kind
    if kind is StepKind.REMINDER_DM:
        return [NewDelivery("dm", p.key, held) for p in reminder_targets(assignee, people)]
    if kind in (StepKind.REMINDER_MENTION, StepKind.SLA_WARNING):
        return [NewDelivery("reply", "task", held)]
    if kind is StepKind.SLA_BREACH:
        sms = [NewDelivery("sms", p.key, held) for p in sms_targets(assignee, people, unreachable)]
        return [NewDelivery("alert", "alerts", held), *sms]
    planned: list[NewDelivery] = []
    first = next_fallback(call_order(people), (), unreachable)
    if first is not None:
        planned.append(NewDelivery("call", first.key, held))
    admin = next((p for p in people if p.admin and p.factory_user_id), None)
    if admin is not None:
        planned.append(NewDelivery("reassign", admin.key, held))
    if safe_default is not SafeDefault.NONE:
        planned.append(NewDelivery("decision", safe_default.value, held))
    planned.append(NewDelivery("incident", "alerts", held))
    return planned


def stop_reason(
    kind: StepKind, channel: str, *, decision: str | None, acknowledged: bool
) -> str | None:
    """Why a pending delivery must not go out any more, or ``None`` when it still must.

    A decision stops everything but the incident report (rule: "Only a decision stops the
    ladder"); an acknowledgement stops the reminder steps (:data:`REMINDER_STEPS`).
    """
    if decision is not None and channel != "incident":
        return f"task {decision}"
    if kind in REMINDER_STEPS and acknowledged:
        return "acknowledged"
    return None


class _Ranked(Protocol):
    @property
    def channel(self) -> str: ...

    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_Ranked)


def next_own(pending: Sequence[R]) -> R:
    """The pending delivery of a step to do next: by :data:`CHANNEL_RANK`, then by id.

    ``pending`` holds delivery records (at least one), e.g. :class:`escalation.ports.DeliveryRow`.
    """
    return min(pending, key=lambda r: (CHANNEL_RANK.get(r.channel, 9), r.id))
