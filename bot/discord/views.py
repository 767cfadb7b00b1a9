"""The components of a task message: its buttons and its snooze select.

Every component is a :class:`discord.ui.DynamicItem` whose ``custom_id`` carries the action and
the task id (``fb:t:approve:<task id>``, grammar in :mod:`bot.discord.ids`), registered by
:class:`bot.discord.cogs.TaskCog` when it loads: buttons on messages posted weeks ago,
before any number of restarts, still work, and their state is re-read from the store on every
click (never from memory).

Discord: an interaction must be answered within 3 s, so every callback answers first
(an ephemeral "recording your decision…" or a modal) and does the slow work afterwards.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

import discord

from bot.discord import ids
from bot.discord.client import bridge_of
from bot.discord.decisions import (
    PRESS_AGAIN,
    SNOOZE_CHOICES,
    actor_from,
    adopter,
    precheck,
    refuse,
    run_decision,
    snooze_seconds,
)
from bot.discord.embeds import details_embed
from bot.discord.forms import DeployConfirmModal, RejectReasonModal
from bot.discord.modals import open_modal
from bot.discord.option_select import OptionSelect
from bot.discord.replies import answer, answer_now, is_answered, say
from escalation.permissions import needs_deploy_confirmation
from escalation.task_kinds import decision_options, is_done_task

if TYPE_CHECKING:
    from bot.store import TrackedTask

__all__ = [
    "DONE_NOTES",
    "DYNAMIC_ITEMS",
    "SnoozeSelect",
    "TaskButton",
    "task_view",
]

log = logging.getLogger(__name__)

#: The decision notes of "✅ Done" on a ``manual_action`` / ``fix_required`` task.
DONE_NOTES = "done"


class TaskButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=ids.TASK_BUTTON_TEMPLATE,
):
    """Approve / Reject / Acknowledge / Details on a task message, and Done on a task that
    asks for work (``manual_action``, ``fix_required``: contract §1.4 ``TaskType``)."""

    STYLES: ClassVar[dict[str, tuple[str, discord.ButtonStyle, str]]] = {
        "approve": ("Approve", discord.ButtonStyle.success, "✅"),
        "done": ("Done", discord.ButtonStyle.success, "✅"),
        "reject": ("Reject", discord.ButtonStyle.danger, "❌"),
        "ack": ("Acknowledge", discord.ButtonStyle.secondary, "👀"),
        "details": ("Details", discord.ButtonStyle.secondary, "📋"),
    }

    def __init__(self, action: str, task_id: str) -> None:
        label, style, emoji = self.STYLES[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=ids.task_button(action, task_id)
            )
        )
        self.action = action
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> TaskButton:
        """Rebuild the button from its ``custom_id`` (no state is kept in memory)."""
        return cls(match["action"], match["task_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Dispatch on the action; every branch answers within Discord's 3 s deadline,
        before any database write."""
        adopt = adopter(interaction, self.task_id)
        if self.action == "details":
            await self._details(interaction)
            await adopt()
        elif self.action == "approve":
            tracked = await precheck(interaction, self.task_id, "approved", "button")
            if tracked is None:
                return
            if needs_deploy_confirmation(tracked.task, "approved", guarded=tracked.guarded):
                if is_answered(interaction):  # deferred while the factory was asked
                    await say(interaction, PRESS_AGAIN.format(button="Approve"))
                    return
                await open_modal(
                    interaction,
                    DeployConfirmModal(self.task_id, tracked.task.title, nonce=interaction.id),
                )
                await adopt()
                return
            await run_decision(interaction, self.task_id, "approved", "button", after_answer=adopt)
        elif self.action == "done":
            # the work is done: an approval with the notes "done"; on a guarded task (work
            # that ships to production) the typed DEPLOY first, as for Approve (README
            # "Production deploys": "from the button and from /factory approve alike")
            tracked = await precheck(interaction, self.task_id, "approved", "button")
            if tracked is None:
                return
            if not is_done_task(tracked.task):  # a hand-crafted click on another kind of task
                await refuse(
                    interaction,
                    self.task_id,
                    "task.approved",
                    f"Done pressed on a {tracked.task.type.value} task",
                    "This task does not ask for work to be done. Nothing was sent.",
                    via="button",
                )
                return
            if needs_deploy_confirmation(tracked.task, "approved", guarded=tracked.guarded):
                if is_answered(interaction):  # deferred while the factory was asked
                    await say(interaction, PRESS_AGAIN.format(button="Done"))
                    return
                modal = DeployConfirmModal(self.task_id, tracked.task.title, nonce=interaction.id)
                modal.notes.default = DONE_NOTES
                await open_modal(interaction, modal)
                await adopt()
                return
            await run_decision(
                interaction,
                self.task_id,
                "approved",
                "button",
                notes=DONE_NOTES,
                after_answer=adopt,
            )
        elif self.action == "reject":
            tracked = await precheck(interaction, self.task_id, "rejected", "button")
            if tracked is None:
                return
            if is_answered(interaction):  # deferred while the factory was asked
                await say(interaction, PRESS_AGAIN.format(button="Reject"))
                await adopt()
                return
            await open_modal(
                interaction,
                RejectReasonModal(self.task_id, tracked.task.title, nonce=interaction.id),
            )
            await adopt()
        elif self.action == "ack":
            bridge = bridge_of(interaction)
            await answer_now(interaction, "⏳ Acknowledging…")
            await adopt()
            outcome = await bridge.acknowledge(
                self.task_id,
                actor_from(interaction, "button"),
                idempotency_seed=f"interaction:{interaction.id}",
            )
            await say(interaction, outcome)

    async def _details(self, interaction: discord.Interaction[Any]) -> None:
        tracked = await bridge_of(interaction).store.get_task(self.task_id)
        if tracked is None:
            await answer(interaction, f"Task `{self.task_id}` is not known to the bridge.")
            return
        await answer(interaction, embed=details_embed(tracked.task))


class SnoozeSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=ids.SNOOZE_TEMPLATE,
):
    """Snooze reminders for 1 h, 4 h or 24 h (the SLA breach never moves)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=ids.snooze_select(task_id),
                placeholder="💤 Snooze reminders…",
                options=[
                    discord.SelectOption(label=label, value=str(seconds))
                    for label, seconds in SNOOZE_CHOICES
                ],
                min_values=1,
                max_values=1,
            )
        )
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> SnoozeSelect:
        """Rebuild the select from its ``custom_id``."""
        return cls(match["task_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Record the snooze and say until when.

        The chosen value is checked whatever the client sent: exactly one of the offered
        durations (``SNOOZE_CHOICES``), otherwise nothing changes and the refusal is audited.
        """
        seconds = snooze_seconds(self.item.values)
        if seconds is None:
            offered = ", ".join(label for label, _ in SNOOZE_CHOICES)
            await refuse(
                interaction,
                self.task_id,
                "task.snooze",
                f"snooze value {list(self.item.values)!r:.100} is not one of the offered choices",
                f"That is not one of the offered snooze durations ({offered}). Nothing was "
                "changed; pick one from the menu.",
                via="button",
            )
            return
        await answer_now(interaction, "⏳ Snoozing…")
        # like TaskButton: a message posted but not yet stored is adopted, so that the snooze
        # below is shown on it
        await adopter(interaction, self.task_id)()
        outcome = await bridge_of(interaction).snooze(
            self.task_id, actor_from(interaction, "button"), seconds
        )
        await say(interaction, outcome)


def task_view(tracked: TrackedTask, *, dashboard_url: str | None) -> discord.ui.View | None:
    """The components of a task message: none once decided (the buttons are removed).

    By task type (contract §1.4 ``TaskType``), row 1 holds: Approve, Reject, Acknowledge
    (``approval``, ``review``, and a ``decision`` without usable options); Done, Acknowledge
    (``manual_action``, ``fix_required``: no Reject); Acknowledge (a ``decision`` with
    options, whose option select is the row above); then Details (a link to
    ``FACTORY_DASHBOARD_URL/tasks/{id}`` when set). The last row is the snooze select.
    """
    if tracked.is_decided:
        return None
    view = discord.ui.View(timeout=None)
    task_id = tracked.task_id
    options = decision_options(tracked.task)
    if options.options and not tracked.guarded:
        select = OptionSelect(task_id, options)
        select.item.row = 0
        view.add_item(select)
    elif is_done_task(tracked.task):
        view.add_item(TaskButton("done", task_id))
    else:
        view.add_item(TaskButton("approve", task_id))
        view.add_item(TaskButton("reject", task_id))
    view.add_item(TaskButton("ack", task_id))
    if dashboard_url:
        view.add_item(
            discord.ui.Button(
                label="Details",
                emoji="📋",
                style=discord.ButtonStyle.link,
                url=f"{dashboard_url.rstrip('/')}/tasks/{task_id}",
            )
        )
    else:
        view.add_item(TaskButton("details", task_id))
    snooze = SnoozeSelect(task_id)
    snooze.item.row = 2
    view.add_item(snooze)
    return view


#: The task message's DynamicItem classes (registered by :class:`bot.discord.cogs.TaskCog`).
DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    TaskButton,
    SnoozeSelect,
    OptionSelect,
)
