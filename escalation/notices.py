"""Texts of the escalation ladder that have hard rules: SMS bodies, call scripts, late markers.

Pure functions (no clock, no I/O). Discord texts with markup are built by the runtime; the
texts here are the ones whose limits are set by the phone network:

* SMS (rule: "plain ASCII, at most 160 characters (task, priority, how late, a short
  reference)"): one GSM-7 segment. Non-ASCII characters are transliterated where Unicode
  gives a decomposition (é → e) and dropped otherwise (emoji); the ASCII characters that are
  not one septet of the GSM-7 basic set are replaced (:func:`sms_plain`); long titles are
  cut with "..".
* Calls (rule: "calls use TwiML ``<Say>``"): a :class:`CallScript`, the plain text of the
  task title and how late it is; the Twilio adapter renders it as TwiML (``bot.pager.twiml``).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from escalation.models import Priority
from escalation.phone import SMS_TWO_SEGMENTS, phone_ref, reply_hint
from escalation.policy import StepKind

__all__ = [
    "GSM7_REPLACEMENTS",
    "LATE_MARK_SECONDS",
    "PRIORITY_LABELS",
    "SMS_MAX_CHARS",
    "STEP_LABELS",
    "CallScript",
    "NextStep",
    "PageItem",
    "ascii_only",
    "call_script",
    "human_duration",
    "late_marker",
    "short_ref",
    "sms_plain",
    "sms_text",
]

#: How a priority is named to people (task messages, reminders, incident reports).
PRIORITY_LABELS: dict[Priority, str] = {
    Priority.CRITICAL: "🔴 Critical",
    Priority.HIGH: "🟠 High",
    Priority.MEDIUM: "🟡 Medium",
    Priority.LOW: "🔵 Low",
}


@dataclass(frozen=True)
class NextStep:
    """The next escalation step shown on the task's message: a label and when (aware UTC).

    ``at`` is ``None`` when no step remains; ``taken`` lists the steps already taken, one
    line each (with "(late by …)" when a step was taken late, e.g. after a restart).
    """

    label: str
    at: datetime | None
    taken: tuple[str, ...] = ()


#: One SMS segment of GSM-7 text (rule: "at most 160 characters").
SMS_MAX_CHARS = 160

#: A step taken more than this many seconds after it was due is marked "(late by …)" (a
#: timer wake-up is a few milliseconds late by nature; a restart after downtime is seconds).
LATE_MARK_SECONDS = 1.0

#: How each step is named on the task message ("Next escalation: …").
STEP_LABELS: dict[StepKind, str] = {
    StepKind.REMINDER_DM: "reminder DM",
    StepKind.REMINDER_MENTION: "reminder @mention",
    StepKind.SLA_WARNING: "SLA warning (@here)",
    StepKind.SLA_BREACH: "SLA breach (SMS + @here)",
    StepKind.CRITICAL: "critical (call, reassign, incident report)",
    **{
        kind: f"repeat page #{kind.repeat_number} (SMS + call)"
        for kind in StepKind
        if kind.repeat_number
    },
}

_PRIORITY_SHORT = {"critical": "CRIT", "high": "HIGH", "medium": "MED", "low": "LOW"}


def human_duration(seconds: float) -> str:
    """``5 s``, ``3 min``, ``2 h 5 min``, ``1 d 2 h`` (seconds rounded down, ≥ 0)."""
    total = max(0, math.floor(seconds))
    if total < 60:
        return f"{total} s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def late_marker(late_seconds: float, grace_seconds: float = LATE_MARK_SECONDS) -> str:
    """`` (late by 5 s)`` when a step was taken more than ``grace_seconds`` late, else ``""``.

    Issue: every step that came due while the bridge was down is taken "late, and marked
    late in the message".
    """
    if late_seconds <= grace_seconds:
        return ""
    return f" (late by {human_duration(late_seconds)})"


def ascii_only(text: str) -> str:
    """``text`` as printable ASCII: accents folded (é → e), other characters dropped, blanks
    collapsed to single spaces."""
    if text.isascii() and text.isprintable():  # nothing to fold or drop (most titles)
        return " ".join(text.split())
    folded = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in folded if 32 <= ord(ch) < 127 or ch in "\t\n\r")
    return " ".join(kept.split())


#: The printable ASCII characters that are not in the GSM-7 basic character set (3GPP TS
#: 23.038, 6.2.1), each with the basic-set character an SMS carries instead: the backtick is
#: not in GSM-7 at all (one would send the whole SMS as UCS-2: 70 characters a segment, so
#: 160 characters become 3 segments) and ``[ ] { } ~ | ^ \`` are in its extension table
#: (an escape and a septet: two septets each, past the 160 of one segment).
GSM7_REPLACEMENTS: dict[str, str] = {
    "`": "'",
    "[": "(",
    "]": ")",
    "{": "(",
    "}": ")",
    "~": "-",
    "|": "/",
    "^": "'",
    "\\": "/",
}

_GSM7_TABLE = str.maketrans(GSM7_REPLACEMENTS)


def sms_plain(text: str) -> str:
    """``text`` as SMS text: :func:`ascii_only`, then each character of
    :data:`GSM7_REPLACEMENTS` replaced, so every character is one septet of the GSM-7 basic
    set and a text of at most 160 characters is one segment (Twilio, "What the Heck is a
    Segment?": GSM-7 160 characters, UCS-2 70). The length is :func:`ascii_only`'s."""
    return ascii_only(text).translate(_GSM7_TABLE)


def short_ref(task_id: str, length: int = 8) -> str:
    """A short reference to a task for SMS and speech: its id's first ``length`` characters."""
    return ascii_only(task_id)[:length]


def _sms_late(seconds: float) -> str:
    total = max(0, math.floor(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m"
    return f"{total // 3600}h{(total % 3600) // 60:02d}m"


def _cut(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 2)].rstrip() + ".."


@dataclass(frozen=True)
class PageItem:
    """One task in an SMS or a call.

    Attributes
    ----------
    task_id, title
        The task.
    priority
        ``critical``, ``high``, ``medium`` or ``low``.
    overdue_seconds
        How late the task is: seconds past its SLA deadline (0 or less: not yet due).
    step
        The ladder step that pages (usually the breach).
    """

    task_id: str
    title: str
    priority: str
    overdue_seconds: float
    step: StepKind = StepKind.SLA_BREACH


def _item_sms(item: PageItem, title_limit: int) -> str:
    prio = _PRIORITY_SHORT.get(item.priority, item.priority.upper()[:4])
    title = _cut(ascii_only(item.title) or "task", title_limit)
    late = f"late {_sms_late(item.overdue_seconds)}" if item.overdue_seconds >= 0 else "due soon"
    return f"{prio} '{title}' {late} ref {short_ref(item.task_id)}"


def sms_text(
    items: Sequence[PageItem],
    *,
    digest: bool = False,
    two_way: bool = False,
    link: str | None = None,
) -> str:
    """One SMS for one or several tasks: plain ASCII of the GSM-7 basic set
    (:func:`sms_plain`), at most :data:`SMS_MAX_CHARS`.

    Parameters
    ----------
    items
        The tasks, most important first (at least one).
    digest
        The items were held for quiet hours (the text says so).
    two_way
        The bridge takes SMS replies (``BRIDGE_PUBLIC_URL`` set, README "Phone"): the text ends
        with the reply hint (:func:`escalation.phone.reply_hint`, ``Reply ACK 4821``), each
        task's reference is its :func:`escalation.phone.phone_ref`, and the limit is two
        segments (:data:`escalation.phone.SMS_TWO_SEGMENTS`, 306 characters).
    link
        With ``two_way``: the Discord jump link of the (first) task message, added when it
        fits.

    Returns
    -------
    str
        E.g. ``"Factory SLA BREACH: CRIT 'Deploy GHL to prod' late 5s ref 3f2a9c1e. Reply in
        Discord #factory-tasks"``; several tasks are listed with titles shortened so that
        everything fits; when even that does not fit, the last ones become ``+N more``.

    Raises
    ------
    ValueError
        When ``items`` is empty.
    """
    if not items:
        raise ValueError("an SMS needs at least one item")
    if two_way:
        return _two_way_sms(items, digest=digest, link=link)
    head = "Factory digest: " if digest else "Factory SLA BREACH: "
    if len(items) > 1:
        head = f"Factory {'digest' if digest else 'SLA'}: {len(items)} tasks: "
    tail = ". See Discord #factory-tasks"
    for shown in range(len(items), 0, -1):
        more = len(items) - shown
        more_text = f"; +{more} more" if more else ""
        budget = SMS_MAX_CHARS - len(head) - len(tail) - len(more_text)
        # fixed part of each item without its title, plus "; " separators
        fixed = sum(len(_item_sms(i, 0)) for i in items[:shown]) + 2 * (shown - 1)
        title_room = (budget - fixed) // shown
        if title_room < 4 and shown > 1:
            continue
        body = "; ".join(_item_sms(i, max(title_room, 0)) for i in items[:shown])
        text = head + body + more_text
        if len(text) + len(tail) <= SMS_MAX_CHARS:
            text += tail
        return sms_plain(text)[:SMS_MAX_CHARS]
    raise AssertionError("unreachable")  # pragma: no cover - shown == 1 always returns


def _two_way_sms(items: Sequence[PageItem], *, digest: bool, link: str | None) -> str:
    """:func:`sms_text` of a two-way bridge: refs are phone refs, the hint ends the text."""
    limit = SMS_TWO_SEGMENTS
    refs = [
        PageItem(phone_ref(i.task_id), i.title, i.priority, i.overdue_seconds, i.step)
        for i in items
    ]
    hint = ". " + reply_hint([i.task_id for i in items])
    with_link = f" {ascii_only(link)}" if link else ""
    head = "Factory digest: " if digest else "Factory SLA BREACH: "
    if len(items) > 1:
        head = f"Factory {'digest' if digest else 'SLA'}: {len(items)} tasks: "
    for shown in range(len(refs), 0, -1):
        more = len(refs) - shown
        more_text = f"; +{more} more" if more else ""
        budget = limit - len(head) - len(hint) - len(more_text)
        fixed = sum(len(_item_sms(i, 0)) for i in refs[:shown]) + 2 * (shown - 1)
        title_room = min((budget - fixed) // shown, 80)
        if title_room < 4 and shown > 1:
            continue
        body = "; ".join(_item_sms(i, max(title_room, 0)) for i in refs[:shown])
        text = head + body + more_text + hint
        if with_link and len(text) + len(with_link) <= limit:
            text += with_link
        return sms_plain(text)[:limit]
    raise AssertionError("unreachable")  # pragma: no cover - shown == 1 always returns


_SPOKEN_UNITS = {"s": "seconds", "min": "minutes", "h": "hours", "d": "days"}


def _spoken(duration: str) -> str:
    words = duration.split()
    return " ".join(_SPOKEN_UNITS.get(w, w) for w in words)


@dataclass(frozen=True)
class CallScript:
    """What the critical call says, as plain text: the adapter renders it for the provider
    (Twilio: TwiML ``<Say>``, see ``bot.pager.twiml``).

    Attributes
    ----------
    speech
        Plain ASCII text to speak (not escaped: the renderer escapes it).
    repeat
        How many times to say it.
    pause_seconds
        Silence between two repetitions, seconds.
    task_ids
        The tasks the call is about (README "Phone": a keypress ``1`` acknowledges them; the
        adapter carries them in its callback URLs). Empty for a call about no task.
    """

    speech: str
    repeat: int = 2
    pause_seconds: int = 1
    task_ids: tuple[str, ...] = ()


def call_script(items: Sequence[PageItem]) -> CallScript:
    """The critical call: the title(s) and how late, said twice (rule: "calls say the task
    and how late it is").

    At most five tasks are named; the others are counted ("And 3 more tasks.").

    Raises
    ------
    ValueError
        When ``items`` is empty.
    """
    if not items:
        raise ValueError("a call needs at least one item")
    parts = []
    for item in items[:5]:
        late = _spoken(human_duration(max(0.0, item.overdue_seconds)))
        parts.append(
            f"Task {ascii_only(item.title)[:200]}, priority {item.priority}, "
            f"is {late} past its deadline."
        )
    if len(items) > 5:
        parts.append(f"And {len(items) - 5} more tasks.")
    speech = (
        "This is Factory Bridge with a critical escalation. "
        + " ".join(parts)
        + " Please open Discord and decide."
    )
    return CallScript(speech, task_ids=tuple(item.task_id for item in items))
