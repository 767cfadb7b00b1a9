"""The phone's two-way rules (README "Phone"): SMS reply commands, task references, keypresses.

Pure functions (no clock, no I/O). The Twilio webhooks (``bot.pager.inbound``) parse what a
person sent with :func:`parse_reply` / :func:`parse_keypress`, and the paging SMS carries
:func:`reply_hint` so the person knows what to answer.

Rules (README "Phone", "SMS replies"):

* every paging SMS ends with a short reference per task and the hint ``Reply ACK 4821``;
* replies are case-, spacing- and punctuation-insensitive (``Ack!``, ``ack, 4821``,
  ``ACK 4821.``): ``ACK <ref>``, ``ACK`` (exactly one open task),
  ``ACK ALL``, ``SNOOZE <ref>``, ``HELP``, ``START`` / ``UNSTOP`` / ``YES`` (Twilio's opt-in
  words: they undo a STOP at Twilio, so they clear the bridge's STOP mark too); anything else
  is unknown;
* no decision (approve/reject) is ever taken by phone.

A reference is four digits derived from the task id (:func:`phone_ref`), the same on every
SMS about that task; when two tasks open for the same phone share one, :func:`resolve_ref`
reports both and the person is asked to use ``ACK ALL`` or Discord.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KEY_ACKNOWLEDGE",
    "KEY_REPEAT",
    "OPT_IN_WORDS",
    "REF_DIGITS",
    "SMS_TWO_SEGMENTS",
    "Command",
    "Keypress",
    "Reply",
    "parse_keypress",
    "parse_reply",
    "phone_ref",
    "reply_hint",
    "resolve_ref",
]

#: Digits of a task reference in an SMS (README "Phone": ``Reply ACK 4821``).
REF_DIGITS = 4

#: Two GSM-7 segments of a concatenated SMS: 2 × 153 characters (README "Phone": "at most two SMS
#: segments (306 characters)").
SMS_TWO_SEGMENTS = 306

#: The call's ``<Gather>`` keys (README "Phone": "Press 1 to acknowledge, 2 to hear this again").
KEY_ACKNOWLEDGE = "1"
KEY_REPEAT = "2"


class Command(StrEnum):
    """What an SMS reply asks for."""

    ACK = "ack"
    ACK_ALL = "ack_all"
    SNOOZE = "snooze"
    HELP = "help"
    START = "start"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Reply:
    """A parsed SMS reply: the command and its reference (``None`` when none was given)."""

    command: Command
    ref: str | None = None


class Keypress(StrEnum):
    """What a key pressed during the call asks for."""

    ACKNOWLEDGE = "acknowledge"
    REPEAT = "repeat"
    NONE = "none"


def phone_ref(task_id: str) -> str:
    """The task's SMS reference: :data:`REF_DIGITS` decimal digits from SHA-256 of its id.

    Stable across restarts and processes (no stored counter), e.g. ``"4821"``.
    """
    digest = hashlib.sha256(task_id.encode("utf-8")).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**REF_DIGITS:0{REF_DIGITS}d}"


def resolve_ref(ref: str, task_ids: Iterable[str]) -> list[str]:
    """The tasks among ``task_ids`` (open for the sender's phone) whose reference is ``ref``.

    Leading/trailing blanks and a leading ``#`` are ignored; the task id itself is accepted
    too (a person may copy it from Discord). Zero, one or (a collision) several ids.
    """
    wanted = ref.strip().lstrip("#").strip()
    ids = list(task_ids)
    exact = [t for t in ids if t == wanted]
    if exact:
        return exact
    return [t for t in ids if phone_ref(t) == wanted]


#: What a reply's words are split at: blanks and commas (``"ack, 4821"``).
_SEPARATORS = re.compile(r"[\s,]+")

#: Punctuation dropped around each word (``"Ack!"``, ``"ACK 4821."``, ``"ACK: 4821"``); not
#: ``#`` (:func:`resolve_ref` reads ``#4821``) and nothing inside a word (``"ackbar"`` stays).
_AROUND = ".,;:!?¡¿…\"'“”‘’()[]"
#: Twilio's default opt-in keywords (Twilio: "Twilio support for opt-out keywords (SMS STOP
#: filtering)": a single-word START, YES or UNSTOP opts a number back in after a STOP).
OPT_IN_WORDS = frozenset({"START", "UNSTOP", "YES"})


def parse_reply(body: str) -> Reply:
    """Parse an SMS reply (README "Phone"): case, spacing and punctuation around the words do
    not matter, and a comma may separate them.

    ``"ack 4821"``, ``"ack, 4821"`` and ``"ACK 4821."`` → ``Reply(ACK, "4821")``; ``" ACK "``
    and ``"Ack!"`` → ``Reply(ACK)``; ``"Ack All."`` → ``Reply(ACK_ALL)``; ``"snooze 4821"`` →
    ``Reply(SNOOZE, "4821")``; ``"help"`` → HELP; ``"start"``/``"unstop"``/``"yes"`` → START (:data:`OPT_IN_WORDS`); anything
    else → ``Reply(UNKNOWN)`` (also ``SNOOZE`` without a reference, a command word inside
    another word such as ``"ackbar"``, a reply that does not start with the command such as
    ``"no ack"``, and ``APPROVE``/``REJECT``: no decision is taken by phone).
    """
    words = [w for w in (p.strip(_AROUND) for p in _SEPARATORS.split(body)) if w]
    if not words:
        return Reply(Command.UNKNOWN)
    verb, rest = words[0].upper(), words[1:]
    if verb in ("ACK", "ACKNOWLEDGE"):
        if not rest:
            return Reply(Command.ACK)
        if len(rest) == 1 and rest[0].upper() == "ALL":
            return Reply(Command.ACK_ALL)
        if len(rest) == 1:
            return Reply(Command.ACK, rest[0])
        return Reply(Command.UNKNOWN)
    if verb == "SNOOZE" and len(rest) == 1:
        return Reply(Command.SNOOZE, rest[0])
    if verb == "HELP" and not rest:
        return Reply(Command.HELP)
    if verb in OPT_IN_WORDS and not rest:
        return Reply(Command.START)
    return Reply(Command.UNKNOWN)


def parse_keypress(digits: str | None) -> Keypress:
    """The ``Digits`` of a ``<Gather>`` (Twilio: the keys pressed, ``None`` when none):
    ``1`` acknowledges, ``2`` repeats, anything else is nothing."""
    key = (digits or "").strip()[:1]
    if key == KEY_ACKNOWLEDGE:
        return Keypress.ACKNOWLEDGE
    if key == KEY_REPEAT:
        return Keypress.REPEAT
    return Keypress.NONE


def reply_hint(task_ids: Sequence[str]) -> str:
    """The end of a paging SMS: ``"Reply ACK 4821"`` (one task) or ``"Reply ACK 4821 /
    ACK 0093 or ACK ALL"`` for several (at most three named, then ``ACK ALL``).

    Raises
    ------
    ValueError
        When ``task_ids`` is empty.
    """
    if not task_ids:
        raise ValueError("a reply hint needs at least one task")
    if len(task_ids) == 1:
        return f"Reply ACK {phone_ref(task_ids[0])}"
    named = " / ".join(f"ACK {phone_ref(t)}" for t in task_ids[:3])
    return f"Reply {named} or ACK ALL"
