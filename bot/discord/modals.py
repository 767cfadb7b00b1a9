"""Modals whose submissions always get an answer: per-opening ids, one persistent handler.

discord.py keeps an opened :class:`discord.ui.Modal` in memory under its ``custom_id`` until it
is submitted. With an id per task, a second person opening the same form replaces the first
one's object and one of the two submissions finds nothing (no answer at all); after a restart no
object waits at all and the submission is dropped silently.

Here instead:

* each opening gets its own id, ``fb:m:<kind>:<task id>:<opening interaction id>``
  (:func:`bot.discord.ids.modal_custom_id`; Discord: a custom_id is at most 100 characters);
* the modal is sent *stopped* (:func:`open_modal`), so discord.py keeps nothing in memory;
* every submission — before or after any number of restarts — reaches
  :func:`dispatch_modal_submit` from the bot's ``on_interaction`` listener
  (:class:`bot.discord.cogs.TaskCog`), which reads the typed
  values from the interaction itself and calls the handler registered for ``<kind>``.

Discord: a modal submission is an interaction like any other and must be answered within 3 s.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import discord

from bot.discord.ids import parse_modal_id
from bot.discord.replies import answer

__all__ = [
    "ModalHandler",
    "dispatch_modal_submit",
    "open_modal",
    "submitted_values",
]

log = logging.getLogger(__name__)

#: ``handler(interaction, task_id, values)``: ``values`` maps each text input's custom_id to
#: what was submitted for it (exactly as sent: nothing guarantees the client's checks ran).
ModalHandler = Callable[[discord.Interaction[Any], str, dict[str, str]], Awaitable[None]]


def submitted_values(data: Mapping[str, Any] | None) -> dict[str, str]:
    """Text input custom_id → submitted value, from a modal submission's ``data``.

    Reads both layouts Discord uses: action rows holding text inputs, and label components
    (``{"type": 18, "component": {...}}``). Missing or non-string values count as "".
    """
    values: dict[str, str] = {}

    def take(component: Any) -> None:
        if not isinstance(component, Mapping):
            return
        custom_id = component.get("custom_id")
        if isinstance(custom_id, str) and "value" in component:
            value = component.get("value")
            values[custom_id] = value if isinstance(value, str) else ""
        for child in component.get("components") or []:
            take(child)
        if isinstance(component.get("component"), Mapping):
            take(component["component"])

    for row in (data or {}).get("components") or []:
        take(row)
    return values


async def open_modal(interaction: discord.Interaction[Any], modal: discord.ui.Modal) -> None:
    """Answer ``interaction`` with ``modal`` without keeping it in memory.

    The modal is stopped first, so discord.py does not store it; its submission is handled by
    :func:`dispatch_modal_submit` (the same way after a restart).
    """
    modal.stop()
    await interaction.response.send_modal(modal)


async def dispatch_modal_submit(
    interaction: discord.Interaction[Any], handlers: Mapping[str, ModalHandler]
) -> bool:
    """Hand a bridge modal's submission to its handler; True when it was one of ours.

    Submissions of other modals are left alone; a bridge form of a kind without a handler
    (``fb:m:<unknown>:…``, which only a hand-made submission carries) is answered that the
    form is not valid, nothing changed. A handler that raises is logged and the person told
    that something went wrong (they always get an answer).
    """
    if interaction.type is not discord.InteractionType.modal_submit:
        return False
    data: Mapping[str, Any] = interaction.data or {}  # type: ignore[assignment]
    parsed = parse_modal_id(str(data.get("custom_id") or ""))
    if parsed is None:
        return False
    kind, task_id = parsed
    handler = handlers.get(kind)
    if handler is None:
        log.warning("a form of unknown kind %r for task %s: refused", kind[:40], task_id)
        await answer(interaction, "This form is not valid; nothing was changed.")
        return True
    try:
        await handler(interaction, task_id, submitted_values(data))
    except Exception:
        log.exception("handling the %s form of task %s failed", kind, task_id)
        await answer(
            interaction,
            "⚠️ Something went wrong while handling your form. The task message shows what "
            "was recorded; try again if your decision is not there.",
        )
    return True
