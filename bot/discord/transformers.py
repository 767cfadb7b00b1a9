"""The ``task`` option of the ``/factory`` commands: checked once, autocompleted from the store.

:class:`TaskId` is a discord.py :class:`~discord.app_commands.Transformer` (discord.py:
"Transformers", examples/app_commands/transformers.py): every command that takes a task
(``approve``, ``reject``, ``ack``, ``snooze``, ``history``) declares
``task: app_commands.Transform[str, TaskId]`` and receives a trimmed, well-formed task id; what
is typed that is not one raises :class:`NotATaskId` before the command runs, and the cog's error
handler answers with :func:`not_a_task_id_text` (nothing is sent to the factory).
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from bot.discord.client import bridge_of
from bot.discord.embeds import truncate
from bot.discord.ids import is_task_id
from bot.discord.listing import PRIORITY_EMOJI

__all__ = [
    "AUTOCOMPLETE_LIMIT",
    "NotATaskId",
    "TaskId",
    "not_a_task_id_text",
    "task_choices",
]

log = logging.getLogger(__name__)

#: Discord: at most 25 autocomplete choices.
AUTOCOMPLETE_LIMIT = 25
#: What an autocomplete choice's value may be (discord.py's ``Transformer.autocomplete``).
ChoiceValue = int | float | str
#: Discord: an autocomplete choice's name is at most 100 characters.
CHOICE_NAME_MAX = 100


class NotATaskId(app_commands.AppCommandError):
    """What was typed for ``task`` is not shaped like a task id (``bot.discord.ids.TASK_ID``).

    Parameters
    ----------
    text:
        The option value as Discord delivered it.
    """

    def __init__(self, text: str) -> None:
        super().__init__(f"not a task id: {text[:80]!r}")
        self.text = text


def not_a_task_id_text(text: str) -> str:
    """The answer to a ``task`` option that is not a task id (escaped, at most 80 characters
    of what was typed)."""
    return (
        f"`{discord.utils.escape_markdown(truncate(text, 80))}` is not a task id: pick a task "
        "from the list that appears as you type. Nothing was sent to the factory."
    )


async def task_choices(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[ChoiceValue]]:
    """Open tasks whose title or id contains what was typed, most urgent first (≤ 25).

    Reads the store only, with one bounded query
    (:meth:`~bot.store.task_search.TaskSearchMixin.search_open_tasks`): Discord drops an
    autocomplete answer after 3 s (Discord docs, "Receiving and Responding"), whatever the
    number of open tasks. Case is ignored; ``%`` and ``_`` are plain characters. Overdue tasks
    come first, then by deadline. Each choice shows the priority and title; its value is the
    task id. A failure gives no choices (typing goes on) and is logged.
    """
    try:
        bridge = bridge_of(interaction)
        matches = await bridge.store.search_open_tasks(
            current, now=bridge.clock().timestamp(), limit=AUTOCOMPLETE_LIMIT
        )
    except Exception:  # an autocomplete failure must not break typing
        log.exception("task autocomplete failed")
        return []
    return [
        app_commands.Choice(
            name=truncate(
                f"{PRIORITY_EMOJI[t.task.priority]} {' '.join(t.task.title.split())} · "
                f"{t.task.priority.value}",
                CHOICE_NAME_MAX,
            ),
            value=t.task_id,
        )
        for t in matches
    ]


class TaskId(app_commands.Transformer):
    """A task id option: trimmed and checked on use, autocompleted from the open tasks."""

    async def transform(self, interaction: discord.Interaction[Any], value: Any, /) -> str:
        """The trimmed task id.

        Raises
        ------
        NotATaskId
            When the value is not shaped like a task id.
        """
        text = str(value)
        task_id = text.strip()
        if not is_task_id(task_id):
            raise NotATaskId(text)
        return task_id

    async def autocomplete(
        self, interaction: discord.Interaction[Any], value: ChoiceValue, /
    ) -> list[app_commands.Choice[ChoiceValue]]:
        """:func:`task_choices` for what was typed so far."""
        return await task_choices(interaction, str(value))
