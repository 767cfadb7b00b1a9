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
``escalate``
    the factory learns the ladder's level (:data:`ESCALATION_LEVELS`): ``POST
    /v1/approvals/{approvalId}/escalate`` (factory contract §1.5), one delivery per level,
    recipient ``level N`` (approval tasks only; see :func:`escalate_levels`);
``decision``
    the safe default decision ``ESCALATION_SAFE_DEFAULT`` (critical step);
``incident``
    the incident report in the alerts channel (critical step, last).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
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
    "ESCALATION_LEVELS",
    "IDEMPOTENT_CHANNELS",
    "LEVEL_LABELS",
    "MAX_LEVEL",
    "NewDelivery",
    "escalate_levels",
    "escalate_recipient",
    "level_of",
    "next_own",
    "plan_deliveries",
    "reported_level",
    "step_level",
    "stop_reason",
]

#: Person-addressed channels that go through the bundler (rule: "DMs and SMS are bundled").
BUNDLED_CHANNELS: tuple[str, ...] = ("dm", "sms")

#: Order of a step's own deliveries (contract Appendix B: call, reassign, safe default, incident report).
#: The factory's escalation goes before the safe default: a decided approval cannot be
#: escalated any more.
CHANNEL_RANK: dict[str, int] = {
    "reply": 0,
    "alert": 1,
    "call": 2,
    "reassign": 3,
    "escalate": 4,
    "decision": 5,
    "incident": 6,
}

#: Deliveries whose side effect carries an Idempotency-Key (factory calls, contract §7.1): one
#: a crash left ``claimed`` is sent again (the factory answers the same request once).
IDEMPOTENT_CHANNELS: frozenset[str] = frozenset({"reassign", "escalate", "decision"})

#: The factory's ``Task.escalationLevel`` (contract §1.4: 0 none, 1–4 tiers) each ladder step
#: reaches, from the rows of the contract's Appendix B "SLA Escalation Timeline":
#: "Reminder #1 → Discord DM" and "Reminder #2 → Discord @mention" are tier 1 (both
#: reminders), "SLA Warning → Discord @here" tier 2, "SLA Breach → All channels + SMS" tier 3,
#: "Critical → Phone + auto-escalate to admin" tier 4. ("Task created", T+0, is level 0.)
ESCALATION_LEVELS: dict[StepKind, int] = {
    StepKind.REMINDER_DM: 1,
    StepKind.REMINDER_MENTION: 1,
    StepKind.SLA_WARNING: 2,
    StepKind.SLA_BREACH: 3,
    StepKind.CRITICAL: 4,
}

#: The highest escalation level (contract §1.4 ``escalationLevel``: tiers 1–4).
MAX_LEVEL = 4

#: What each level is, as the escalation's ``reason`` names it (Appendix B).
LEVEL_LABELS: dict[int, str] = {1: "reminder", 2: "SLA warning", 3: "SLA breach", 4: "critical"}

_LEVEL_PREFIX = "level "


def step_level(kind: StepKind) -> int:
    """The level ``kind`` reaches: :data:`ESCALATION_LEVELS`; a repeat (README "Phone", after the
    critical step) stays at the top tier, :data:`MAX_LEVEL`."""
    return ESCALATION_LEVELS.get(kind, MAX_LEVEL)


def escalate_recipient(level: int) -> str:
    """The ``recipient`` of the ``escalate`` delivery of ``level`` (``"level 2"``)."""
    return f"{_LEVEL_PREFIX}{level}"


def level_of(recipient: str) -> int | None:
    """The level of an ``escalate`` delivery's ``recipient``; ``None`` when it names none."""
    if not recipient.startswith(_LEVEL_PREFIX):
        return None
    text = recipient[len(_LEVEL_PREFIX) :]
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_LEVEL else None


def reported_level(outcome: Mapping[str, Any]) -> int | None:
    """The highest level a finished step reported to the factory (an ``escalate`` delivery
    ``sent`` in its stored outcome, :func:`escalation.executor.step_outcome`), or ``None``."""
    # read on every wake-up for every step row of the task (escalation.progress.kept_rows): a
    # plain loop, and an exact type test first (an ABC isinstance check costs more)
    best: int | None = None
    for d in outcome.get("deliveries") or ():
        if (
            (d.__class__ is dict or isinstance(d, Mapping))
            and d.get("channel") == "escalate"
            and d.get("status") == "sent"
        ):
            n = level_of(str(d.get("recipient", "")))
            if n is not None and (best is None or n > best):
                best = n
    return best


def escalate_levels(kind: StepKind, reported: Collection[int], *, closed: bool) -> list[int]:
    """The levels a step of ``kind`` reports to the factory, lowest first.

    The contract's ``EscalateBody`` (§1.5: ``reason``, ``escalateTo``) carries no level: each
    ``POST /v1/approvals/{approvalId}/escalate`` raises the task one tier. So the ladder sends
    one call per level, in order, and never skips one: every level up to the step's
    (:data:`ESCALATION_LEVELS`) that is not ``reported`` yet (a reminder skipped because a
    later step was due, or stopped by an acknowledgement, or a call that failed, is caught up
    by the next step).

    Parameters
    ----------
    kind
        The step being taken.
    reported
        Levels already sent or under way (``escalate`` deliveries ``pending``, ``claimed`` or
        ``sent``).
    closed
        The factory answered 404/409 to an escalation (the approval is decided or gone):
        nothing more is reported.
    """
    if closed:
        return []
    return [n for n in range(1, step_level(kind) + 1) if n not in reported]


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


@lru_cache(maxsize=1024)
def _plain(channel: str, recipient: str, held: bool) -> NewDelivery:
    """A :class:`NewDelivery` without detail, built once per value: it is frozen, and every
    step of every task plans the same few (a frozen dataclass costs a call per field)."""
    return NewDelivery(channel, recipient, held)


def plan_deliveries(
    step: StepDue,
    *,
    people: Sequence[Person],
    assignee: Person | None,
    unreachable: Collection[str],
    safe_default: SafeDefault,
    escalate: Sequence[int] = (),
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
    escalate
        The levels to report to the factory (:func:`escalate_levels`; empty for a task
        without an approval): one ``escalate`` delivery each, after the step's other own
        deliveries but before the safe default.

    Returns
    -------
    list of NewDelivery
        Reminder DM: one ``dm`` per reminder target. Reminder @mention and SLA warning: one
        ``reply``. SLA breach: the ``alert``, then one ``sms`` per reachable target.
        Repeat (README "Phone"): the first reachable on-call ``call`` and one ``sms`` per
        reachable target, like the breach without its alert.
        Critical: the first reachable on-call ``call``, ``reassign`` to the first admin with
        a factory id, the safe-default ``decision`` (unless ``none``), the ``incident`` report.
        Every step: the ``escalate`` deliveries of ``escalate`` (recipient ``level N``).
    """
    held = step.held_for_quiet_hours
    kind = step.kind
    levels = [NewDelivery("escalate", escalate_recipient(n), held, {"level": n}) for n in escalate]
    if kind is StepKind.REMINDER_DM:
        dms = [_plain("dm", p.key, held) for p in reminder_targets(assignee, people)]
        return [*dms, *levels]
    if kind in (StepKind.REMINDER_MENTION, StepKind.SLA_WARNING):
        return [_plain("reply", "task", held), *levels]
    if kind is StepKind.SLA_BREACH:
        sms = [_plain("sms", p.key, held) for p in sms_targets(assignee, people, unreachable)]
        return [_plain("alert", "alerts", held), *sms, *levels]
    if kind.repeat_number:  # the breach page again: SMS to the rotation, a call (README "Phone")
        sms = [_plain("sms", p.key, held) for p in sms_targets(assignee, people, unreachable)]
        first_call = next_fallback(call_order(people), (), unreachable)
        call = [_plain("call", first_call.key, held)] if first_call is not None else []
        return [*call, *sms, *levels]
    planned: list[NewDelivery] = []
    first = next_fallback(call_order(people), (), unreachable)
    if first is not None:
        planned.append(_plain("call", first.key, held))
    admin = next((p for p in people if p.admin and p.factory_user_id), None)
    if admin is not None:
        planned.append(_plain("reassign", admin.key, held))
    planned.extend(levels)
    if safe_default is not SafeDefault.NONE:
        planned.append(_plain("decision", safe_default.value, held))
    planned.append(_plain("incident", "alerts", held))
    return planned


def stop_reason(
    kind: StepKind, channel: str, *, decision: str | None, acknowledged: bool
) -> str | None:
    """Why a pending delivery must not go out any more, or ``None`` when it still must.

    A decision stops everything but the incident report (rule: "Only a decision stops the
    ladder"); an acknowledgement stops the reminder steps (:data:`REMINDER_STEPS`) and the
    repeats (README "Phone": "while the task has neither a decision nor an acknowledgement").
    """
    if decision is not None and channel != "incident":
        return f"task {decision}"
    if (kind in REMINDER_STEPS or kind.repeat_number) and acknowledged:
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
