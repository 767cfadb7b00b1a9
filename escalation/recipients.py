"""Who each ladder step reaches (contract Appendix B), as pure functions of the roster.

Rules
-----
* Reminders (DM, @mention): the task's assignee when the roster maps its ``assigneeId`` to a
  Discord user; no (mapped) assignee → every on-call operator with a Discord id.
* SMS at the breach: every on-call operator with a reachable phone, and the assignee when the
  roster gives them a reachable phone; each person once, roster order, assignee first.
* The call at the critical step goes to one person: the first on-call operator with a
  reachable phone, then the admins (roster order).
* Fallback (Twilio 21610, the recipient replied STOP): the phone is marked unreachable and the
  next person of the same order who was not tried yet for this step gets it; for SMS the order
  continues with the admins after the on-call operators. :func:`next_fallback` returns
  ``None`` when everyone was tried.

A "person" here is a :class:`Person`; the bot maps its roster onto it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

__all__ = [
    "Person",
    "call_order",
    "next_fallback",
    "reminder_targets",
    "sms_order",
    "sms_targets",
]


@dataclass(frozen=True)
class Person:
    """An operator as the ladder sees them.

    Attributes
    ----------
    key
        Stable id within the roster (the name), used in bundle keys and stored rows.
    discord_user_id, phone, factory_user_id
        Contact points (``None`` when absent); ``phone`` is E.164.
    on_call, admin
        Roster flags.
    """

    key: str
    discord_user_id: int | None = None
    phone: str | None = None
    factory_user_id: str | None = None
    on_call: bool = False
    admin: bool = False


def _unique(people: Sequence[Person]) -> list[Person]:
    seen: set[str] = set()
    out: list[Person] = []
    for p in people:
        if p.key not in seen:
            seen.add(p.key)
            out.append(p)
    return out


def reminder_targets(assignee: Person | None, roster: Sequence[Person]) -> list[Person]:
    """Who gets the reminder DM and @mention: the assignee, else every on-call operator.

    Only people with a Discord user id count.
    """
    if assignee is not None and assignee.discord_user_id is not None:
        return [assignee]
    return [p for p in roster if p.on_call and p.discord_user_id is not None]


def _reachable(p: Person, unreachable: Collection[str]) -> bool:
    return p.phone is not None and p.phone not in unreachable


def sms_order(assignee: Person | None, roster: Sequence[Person]) -> list[Person]:
    """Everyone who may get the breach SMS, in order: assignee, on-call, then admins."""
    first = [assignee] if assignee is not None else []
    return _unique([*first, *(p for p in roster if p.on_call), *(p for p in roster if p.admin)])


def sms_targets(
    assignee: Person | None, roster: Sequence[Person], unreachable: Collection[str] = ()
) -> list[Person]:
    """Who gets the breach SMS: the assignee and every on-call operator with a reachable phone."""
    first = [assignee] if assignee is not None else []
    wanted = _unique([*first, *(p for p in roster if p.on_call)])
    return [p for p in wanted if _reachable(p, unreachable)]


def call_order(roster: Sequence[Person]) -> list[Person]:
    """Who may get the critical call, in order: on-call operators, then admins."""
    return _unique([*(p for p in roster if p.on_call), *(p for p in roster if p.admin)])


def next_fallback(
    order: Sequence[Person], tried: Collection[str], unreachable: Collection[str] = ()
) -> Person | None:
    """The first person of ``order`` with a reachable phone whose key is not in ``tried``."""
    for p in order:
        if p.key not in tried and _reachable(p, unreachable):
            return p
    return None
