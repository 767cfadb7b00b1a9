"""TwiML for the ladder's calls and the phone's answers (Twilio docs, "TwiML Voice" and
"TwiML Messaging").

* A one-way call (``BRIDGE_PUBLIC_URL`` unset): a :class:`escalation.notices.CallScript` as
  ``<Say>`` verbs (``alice`` voice, XML-escaped), repetitions separated by ``<Pause length>``.
* A two-way call (README "Phone"): the script inside ``<Gather numDigits="1" action=…>`` followed by
  "Press 1 to acknowledge, 2 to hear this again"; Twilio posts the pressed key to ``action``
  (``bot.pager.inbound``). Without a key the call goes on to the goodbye and hangs up.
* SMS answers: ``<Response><Message>…</Message></Response>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from escalation.notices import CallScript, PageItem, call_script

__all__ = [
    "GATHER_PROMPT",
    "GATHER_TIMEOUT_SECONDS",
    "VOICE",
    "call_twiml",
    "gather_twiml",
    "message_twiml",
    "render_twiml",
    "say_twiml",
]

#: The Twilio text-to-speech voice of every call.
VOICE = "alice"

#: What a two-way call asks (README "Phone").
GATHER_PROMPT = "Press 1 to acknowledge, 2 to hear this again."

#: Seconds ``<Gather>`` waits for a key after the prompt (Twilio's default is 5).
GATHER_TIMEOUT_SECONDS = 6


def _say(text: str) -> str:
    return f'<Say voice="{VOICE}">{escape(text)}</Say>'


def render_twiml(script: CallScript) -> str:
    """``<Response>`` saying ``script.speech`` ``script.repeat`` times, with pauses between."""
    said = _say(script.speech)
    pause = f'<Pause length="{script.pause_seconds}"/>'
    return f"<Response>{pause.join([said] * max(1, script.repeat))}</Response>"


def gather_twiml(script: CallScript, action: str) -> str:
    """A two-way call: the speech once and the prompt inside a one-key ``<Gather>`` whose
    ``action`` (absolute URL, POST) receives ``Digits``; then a goodbye (no key pressed).

    Twilio docs, "<Gather>": ``numDigits="1"`` ends the gather on the first key.
    """
    return (
        "<Response>"
        f'<Gather numDigits="1" action={quoteattr(action)} method="POST" '
        f'timeout="{GATHER_TIMEOUT_SECONDS}">'
        f"{_say(script.speech)}{_say(GATHER_PROMPT)}"
        "</Gather>"
        f"{_say('No key was pressed. Goodbye.')}"
        "</Response>"
    )


def say_twiml(text: str) -> str:
    """``<Response>`` saying ``text`` once (then the call ends)."""
    return f"<Response>{_say(text)}</Response>"


def message_twiml(text: str | None) -> str:
    """An SMS answer: ``<Response><Message>text</Message></Response>``; ``None``: an empty
    ``<Response/>`` (Twilio sends nothing back)."""
    if text is None:
        return "<Response/>"
    return f"<Response><Message>{escape(text)}</Message></Response>"


def call_twiml(items: Sequence[PageItem]) -> str:
    """TwiML of the critical call about ``items`` (:func:`escalation.notices.call_script`).

    Raises
    ------
    ValueError
        When ``items`` is empty.
    """
    return render_twiml(call_script(items))
