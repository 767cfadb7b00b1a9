"""Buttons, selects and modals of the task message.

Every component is a :class:`discord.ui.DynamicItem` whose ``custom_id`` carries the action and
the task id (``fb:t:approve:<task id>``), registered once in ``setup_hook``: buttons on messages
posted weeks ago, before any number of restarts, still work, and their state is re-read from the
store on every click (never from memory).

Discord: an interaction must be answered within 3 s, so every callback answers first
(an ephemeral "recording your decision…" or a modal) and does the slow work afterwards.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

import discord

from bot.discord.embeds import details_embed
from escalation.permissions import needs_deploy_confirmation

if TYPE_CHECKING:
    from bot.bridge import Actor, Bridge, Outcome
    from bot.store import TrackedTask

__all__ = [
    "DYNAMIC_ITEMS",
    "DeployConfirmModal",
    "RejectReasonModal",
    "SnoozeSelect",
    "TaskButton",
    "actor_from",
    "task_view",
]

log = logging.getLogger(__name__)

TASK_ID = r"[A-Za-z0-9_.\-]{1,64}"
SNOOZE_CHOICES: tuple[tuple[str, int], ...] = (
    ("1 hour", 3600),
    ("4 hours", 14400),
    ("24 hours", 86400),
)
REASON_MAX = 1000


def bridge_of(interaction: discord.Interaction[Any]) -> Bridge:
    """The :class:`~bot.bridge.Bridge` attached to the client that received ``interaction``."""
    return interaction.client.bridge  # type: ignore[attr-defined, no-any-return]


def actor_from(interaction: discord.Interaction[Any], via: str) -> Actor:
    """Build an :class:`~bot.bridge.Actor` from the member who triggered ``interaction``."""
    from bot.bridge import Actor

    user = interaction.user
    roles = frozenset(role.id for role in getattr(user, "roles", []))
    return Actor(name=user.name, via=via, discord_user_id=user.id, role_ids=roles)


async def _answer(interaction: discord.Interaction[Any], outcome: Outcome) -> None:
    """Replace the ephemeral "working…" answer with the outcome (or send it if none yet)."""
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=outcome.message)
        else:
            await interaction.response.send_message(outcome.message, ephemeral=True)
    except discord.HTTPException as exc:  # the person's view only; the decision stands
        log.warning("could not tell %s the outcome: %s", interaction.user, exc)


def _progress(interaction: discord.Interaction[Any]) -> Any:
    async def on_retry(attempt: int, problem: str) -> None:
        try:
            await interaction.edit_original_response(
                content=f"⏳ Recording your decision… the factory is slow ({problem}); retry {attempt}/3."
            )
        except discord.HTTPException:
            pass

    return on_retry


async def _precheck(
    interaction: discord.Interaction[Any], task_id: str, decision: str, via: str
) -> TrackedTask | None:
    """Role and state checks before anything is sent (reads only, so the answer is fast);
    a refusal is answered first and audited afterwards."""
    bridge = bridge_of(interaction)
    actor = actor_from(interaction, via)
    outcome, tracked = await bridge.check(task_id, decision, actor)
    if outcome is not None:
        await _answer(interaction, outcome)
        await bridge.audit_refusal(task_id, decision, actor, outcome)
        return None
    return tracked


def _adopter(interaction: discord.Interaction[Any], task_id: str) -> Callable[[], Awaitable[None]]:
    """After answering: record the clicked message as the task's if the store lacks it.

    A crash between posting and storing the message id is healed by the click (never by an
    ephemeral answer, e.g. an item picked from a batch message). Runs after the interaction
    was answered, so the write never delays the answer.
    """

    async def adopt() -> None:
        message = interaction.message
        if message is None or message.flags.ephemeral:
            return
        store = bridge_of(interaction).store
        tracked = await store.get_task(task_id)
        if tracked is not None and tracked.message_id is None:
            await store.adopt_message(task_id, message.channel.id, message.id)

    return adopt


async def run_decision(
    interaction: discord.Interaction[Any],
    task_id: str,
    decision: str,
    via: str,
    *,
    notes: str | None = None,
    after_answer: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Answer at once, send the decision (with retries), then tell the person the outcome.

    ``after_answer`` runs right after the interaction was answered (e.g. adopting the message).
    """
    bridge = bridge_of(interaction)
    actor = actor_from(interaction, via)
    await interaction.response.send_message("⏳ Recording your decision…", ephemeral=True)
    if after_answer is not None:
        await after_answer()
    outcome = await bridge.decide(
        task_id,
        decision,
        actor,
        notes=notes,
        idempotency_seed=f"interaction:{interaction.id}",
        on_retry=_progress(interaction),
    )
    await _answer(interaction, outcome)


class RejectReasonModal(discord.ui.Modal):
    """Asks for the rejection reason (required, at most 1000 characters)."""

    reason: discord.ui.TextInput[RejectReasonModal] = discord.ui.TextInput(
        label="Why are you rejecting it?",
        style=discord.TextStyle.paragraph,
        required=True,
        max_length=REASON_MAX,
        custom_id="reason",
    )

    def __init__(self, task_id: str, title: str) -> None:
        super().__init__(title=_modal_title("Reject", title), custom_id=f"fb:m:reject:{task_id}")
        self.task_id = task_id

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Send ``rejected`` with the reason as ``notes``."""
        await run_decision(
            interaction, self.task_id, "rejected", "modal", notes=self.reason.value.strip()
        )


class DeployConfirmModal(discord.ui.Modal):
    """ "Type DEPLOY to confirm" before approving a production deploy (master plan §8)."""

    confirmation: discord.ui.TextInput[DeployConfirmModal] = discord.ui.TextInput(
        label="Type DEPLOY to confirm",
        placeholder="DEPLOY",
        required=True,
        max_length=20,
        custom_id="confirm",
    )
    notes: discord.ui.TextInput[DeployConfirmModal] = discord.ui.TextInput(
        label="Notes (optional)",
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=REASON_MAX,
        custom_id="notes",
    )

    def __init__(self, task_id: str, title: str) -> None:
        super().__init__(title=_modal_title("Deploy", title), custom_id=f"fb:m:deploy:{task_id}")
        self.task_id = task_id

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        """Approve only when exactly ``DEPLOY`` was typed; otherwise nothing is sent."""
        typed = self.confirmation.value.strip()
        if typed != "DEPLOY":
            bridge = bridge_of(interaction)
            actor = actor_from(interaction, "modal")
            await bridge.store.audit(
                actor_id=str(actor.discord_user_id),
                actor_name=actor.name,
                via="modal",
                action="task.approved",
                task_id=self.task_id,
                outcome="refused",
                detail="deploy confirmation not typed",
            )
            await interaction.response.send_message(
                f"You typed `{discord.utils.escape_markdown(typed)[:20]}`, not `DEPLOY`: "
                "nothing was sent to the factory. Press Approve again to retry.",
                ephemeral=True,
            )
            return
        await run_decision(
            interaction,
            self.task_id,
            "approved",
            "modal",
            notes=(self.notes.value or "").strip() or None,
        )


def _modal_title(verb: str, title: str) -> str:
    text = f"{verb}: {title}"
    return text if len(text) <= 45 else text[:44] + "…"  # Discord: modal title ≤ 45


class TaskButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"fb:t:(?P<action>approve|reject|details|ack):(?P<task_id>{TASK_ID})",
):
    """Approve / Reject / Acknowledge / Details on a task message."""

    STYLES: ClassVar[dict[str, tuple[str, discord.ButtonStyle, str]]] = {
        "approve": ("Approve", discord.ButtonStyle.success, "✅"),
        "reject": ("Reject", discord.ButtonStyle.danger, "❌"),
        "ack": ("Acknowledge", discord.ButtonStyle.secondary, "👀"),
        "details": ("Details", discord.ButtonStyle.secondary, "📋"),
    }

    def __init__(self, action: str, task_id: str) -> None:
        label, style, emoji = self.STYLES[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"fb:t:{action}:{task_id}"
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
        adopt = _adopter(interaction, self.task_id)
        if self.action == "details":
            await self._details(interaction)
            await adopt()
        elif self.action == "approve":
            tracked = await _precheck(interaction, self.task_id, "approved", "button")
            if tracked is None:
                return
            if needs_deploy_confirmation(tracked.task, "approved"):
                await interaction.response.send_modal(
                    DeployConfirmModal(self.task_id, tracked.task.title)
                )
                await adopt()
                return
            await run_decision(interaction, self.task_id, "approved", "button", after_answer=adopt)
        elif self.action == "reject":
            tracked = await _precheck(interaction, self.task_id, "rejected", "button")
            if tracked is None:
                return
            await interaction.response.send_modal(
                RejectReasonModal(self.task_id, tracked.task.title)
            )
            await adopt()
        elif self.action == "ack":
            bridge = bridge_of(interaction)
            await interaction.response.send_message("⏳ Acknowledging…", ephemeral=True)
            await adopt()
            outcome = await bridge.acknowledge(
                self.task_id,
                actor_from(interaction, "button"),
                idempotency_seed=f"interaction:{interaction.id}",
            )
            await _answer(interaction, outcome)

    async def _details(self, interaction: discord.Interaction[Any]) -> None:
        tracked = await bridge_of(interaction).store.get_task(self.task_id)
        if tracked is None:
            await interaction.response.send_message(
                f"Task `{self.task_id}` is not known to the bridge.", ephemeral=True
            )
            return
        await interaction.response.send_message(embed=details_embed(tracked.task), ephemeral=True)


class SnoozeSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=rf"fb:snooze:(?P<task_id>{TASK_ID})",
):
    """Snooze reminders for 1 h, 4 h or 24 h (the SLA breach never moves)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"fb:snooze:{task_id}",
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
        """Record the snooze and say until when."""
        seconds = int(self.item.values[0]) if self.item.values else SNOOZE_CHOICES[0][1]
        await interaction.response.send_message("⏳ Snoozing…", ephemeral=True)
        # like TaskButton: a message posted but not yet stored is adopted, so that the snooze
        # below is shown on it
        await _adopter(interaction, self.task_id)()
        outcome = await bridge_of(interaction).snooze(
            self.task_id, actor_from(interaction, "button"), seconds
        )
        await _answer(interaction, outcome)


def task_view(tracked: TrackedTask, *, dashboard_url: str | None) -> discord.ui.View | None:
    """The components of a task message: none once decided (the buttons are removed).

    Row 1: Approve, Reject, Acknowledge, Details (a link to ``FACTORY_DASHBOARD_URL/tasks/{id}``
    when set); row 2: the snooze select.
    """
    if tracked.is_decided:
        return None
    view = discord.ui.View(timeout=None)
    task_id = tracked.task_id
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
    select = SnoozeSelect(task_id)
    select.item.row = 1
    view.add_item(select)
    return view


#: Every DynamicItem class the client registers in ``setup_hook``.
DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (TaskButton, SnoozeSelect)
