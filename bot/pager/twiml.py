"""TwiML for the ladder's calls: a :class:`escalation.notices.CallScript` as ``<Say>`` verbs.

Twilio docs, "TwiML Voice: <Say>" and "<Pause>": the text is spoken by the ``alice`` voice,
XML-escaped; repetitions are separated by a ``<Pause length="…"/>`` (seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from escalation.notices import CallScript, PageItem, call_script

__all__ = ["VOICE", "call_twiml", "render_twiml"]

#: The Twilio text-to-speech voice of every call.
VOICE = "alice"


def render_twiml(script: CallScript) -> str:
    """``<Response>`` saying ``script.speech`` ``script.repeat`` times, with pauses between."""
    said = f'<Say voice="{VOICE}">{escape(script.speech)}</Say>'
    pause = f'<Pause length="{script.pause_seconds}"/>'
    return f"<Response>{pause.join([said] * max(1, script.repeat))}</Response>"


def call_twiml(items: Sequence[PageItem]) -> str:
    """TwiML of the critical call about ``items`` (:func:`escalation.notices.call_script`).

    Raises
    ------
    ValueError
        When ``items`` is empty.
    """
    return render_twiml(call_script(items))
