"""The ``/factory`` slash commands (reference 002 §6.2): a discord.py ``GroupCog``.

- ``/factory status`` — the dashboard summary (``GET /v1/dashboard/summary``).
- ``/factory pending [priority]`` — open tasks by SLA urgency, with jump links.
- ``/factory approve task [notes]``, ``reject task reason``, ``ack task``,
  ``snooze task duration`` — the same actions and checks as the task message's buttons
  (:meth:`Bridge.decide`, :meth:`Bridge.acknowledge`, :meth:`Bridge.snooze`); approving a
  production deploy needs the deploy role and the "type DEPLOY" modal.
- ``/factory pipelines [status]``, ``/factory blockers`` (reference 002 §4.3).
- ``/factory history task`` — one task's audit trail.

Every answer is ephemeral. Commands that call the factory defer first (Discord: an interaction
must be answered within 3 s) and then edit the "thinking…" answer. The ``task`` option is a
:class:`~bot.discord.transformers.TaskId` (checked before the command runs, autocompleted from
the store's open tasks); listings and their ◀ / ▶ pages are in :mod:`bot.discord.pager`. The
commands are synced to ``DISCORD_GUILD_ID`` by :class:`bot.discord.client.BridgeBot`.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord.client import BridgeBot, bridge_of
from bot.discord.decisions import (
    REASON_MAX,
    SNOOZE_CHOICES,
    actor_from,
    refuse,
    run_decision,
    snooze_seconds,
)
from bot.discord.forms import DeployConfirmModal
from bot.discord.listing import PRIORITY_EMOJI, status_embed
from bot.discord.modals import open_modal
from bot.discord.pager import UNREACHABLE, PageButton, problem_text, show_listing
from bot.discord.replies import answer, answer_now, defer_thinking, is_answered
from bot.discord.transformers import NotATaskId, TaskId, not_a_task_id_text
from bot.factory.client import FactoryError, FactoryUnavailable
from bot.store import TrackedTask
from escalation.models import Priority
from escalation.permissions import needs_deploy_confirmation
from escalation.task_kinds import command_refusal

__all__ = [
    "PIPELINE_STATUSES",
    "FactoryCog",
]

log = logging.getLogger(__name__)

#: Pipeline statuses ``/factory pipelines`` offers as choices.
PIPELINE_STATUSES = ("active", "paused", "completed", "failed", "archived")
_AGAIN = (
    "The bridge had not seen this task yet and has now loaded it. Run {command} again to "
    "continue; nothing was sent to the factory."
)
_FAILED = "⚠️ Something went wrong; nothing was changed. Please try again."

PRIORITY_CHOICES = [
    app_commands.Choice(name=f"{PRIORITY_EMOJI[p]} {p.value}", value=p.value) for p in Priority
]
STATUS_CHOICES = [app_commands.Choice(name=s, value=s) for s in PIPELINE_STATUSES]
SNOOZE_DURATIONS = [
    app_commands.Choice(name=label, value=seconds) for label, seconds in SNOOZE_CHOICES
]

#: The command that sends each decision (for the audit's words).
_COMMAND_OF = {"approved": "approve", "rejected": "reject"}

#: The ``task`` option of every command that takes one.
TaskOption = app_commands.Transform[str, TaskId]


async def _defer_if_unknown(interaction: discord.Interaction[Any], task_id: str) -> None:
    """Defer (ephemeral "thinking…") before the factory is asked about a task the bridge never
    saw (``Bridge.get_or_fetch``), which may take longer than Discord's 3 s deadline."""
    if await bridge_of(interaction).store.get_task(task_id) is None:
        await defer_thinking(interaction)


async def _fits_the_task(
    interaction: discord.Interaction[Any], tracked: TrackedTask, decision: str
) -> bool:
    """True when ``decision`` is one the task's own controls offer; otherwise the refusal is
    audited and answered (:func:`escalation.task_kinds.command_refusal`), nothing is sent."""
    refusal = command_refusal(tracked.task, decision, guarded=tracked.guarded)
    if refusal is None:
        return True
    await refuse(
        interaction,
        tracked.task_id,
        f"task.{decision}",
        f"/factory {_COMMAND_OF[decision]}: not a control of a {tracked.task.type.value} task",
        f"{refusal} Nothing was sent to the factory.",
        via="command",
    )
    return False


class FactoryCog(
    commands.GroupCog,
    group_name="factory",
    group_description="The AI software factory's decisions",
):
    """``/factory …``: the whole decision surface as slash commands (answers are ephemeral).

    Parameters
    ----------
    bot:
        The bot it is loaded into (registers the listings' ◀ / ▶ buttons on it).
    """

    def __init__(self, bot: BridgeBot) -> None:
        self.bot = bot
        super().__init__()

    async def cog_load(self) -> None:
        """Register the listings' page buttons (they work on messages of earlier runs too)."""
        self.bot.add_dynamic_items(PageButton)

    async def cog_unload(self) -> None:
        """Unregister the page buttons."""
        self.bot.remove_dynamic_items(PageButton)

    async def cog_app_command_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """A ``task`` that is not a task id is answered as such; anything else is logged and
        the person told that nothing was changed."""
        if isinstance(error, NotATaskId):
            await answer(interaction, not_a_task_id_text(error.text))
            return
        log.error("/factory command failed", exc_info=error)
        await answer(interaction, _FAILED)

    @app_commands.command(name="status", description="The factory's dashboard summary")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        """``GET /v1/dashboard/summary`` as an embed."""
        await defer_thinking(interaction)
        try:
            summary = await bridge_of(interaction).factory.dashboard_summary()
        except (FactoryError, FactoryUnavailable) as exc:
            await answer(interaction, content=UNREACHABLE.format(problem=problem_text(exc)))
            return
        await answer(interaction, embed=status_embed(summary))

    @app_commands.command(name="pending", description="Open tasks, most urgent SLA first")
    @app_commands.describe(priority="Only tasks of this priority")
    @app_commands.choices(priority=PRIORITY_CHOICES)
    async def pending(
        self, interaction: discord.Interaction[Any], priority: str | None = None
    ) -> None:
        """Open tasks: breached first, then soonest deadline; jump links to their messages."""
        await show_listing(interaction, "pending", priority or "")

    @app_commands.command(name="approve", description="Approve a task")
    @app_commands.describe(task="The task (type to search)", notes="Notes sent with the approval")
    async def approve(
        self,
        interaction: discord.Interaction[Any],
        task: TaskOption,
        notes: app_commands.Range[str, 1, REASON_MAX] | None = None,
    ) -> None:
        """Same checks as the Approve button; production deploys open the DEPLOY modal."""
        bridge = bridge_of(interaction)
        clean_notes = (notes or "").strip() or None
        if clean_notes is not None and len(clean_notes) > REASON_MAX:
            await refuse(
                interaction,
                task,
                "task.approved",
                f"notes too long ({len(clean_notes)})",
                f"Notes are at most {REASON_MAX} characters. Nothing was sent to the factory.",
                via="command",
            )
            return
        await _defer_if_unknown(interaction, task)
        outcome = await bridge.precheck(task, "approved", actor_from(interaction, "command"))
        if outcome is not None:
            await answer(interaction, outcome.message)
            return
        tracked = await bridge.store.get_task(task)
        assert tracked is not None  # precheck found or fetched it
        if not await _fits_the_task(interaction, tracked, "approved"):
            return
        if needs_deploy_confirmation(tracked.task, "approved", guarded=tracked.guarded):
            if is_answered(interaction):  # deferred while the factory was asked
                await answer(interaction, _AGAIN.format(command="/factory approve"))
                return
            modal = DeployConfirmModal(task, tracked.task.title, nonce=interaction.id)
            if clean_notes:
                modal.notes.default = clean_notes
            await open_modal(interaction, modal)
            return
        await run_decision(interaction, task, "approved", "command", notes=clean_notes)

    @app_commands.command(name="reject", description="Reject a task, with a reason")
    @app_commands.describe(task="The task (type to search)", reason="Why it is rejected")
    async def reject(
        self,
        interaction: discord.Interaction[Any],
        task: TaskOption,
        reason: app_commands.Range[str, 1, REASON_MAX],
    ) -> None:
        """Same checks as the Reject button; the reason goes to the factory as ``notes``."""
        if not reason.strip():
            await refuse(
                interaction,
                task,
                "task.rejected",
                "reject reason missing",
                "A rejection needs a reason. Nothing was sent.",
                via="command",
            )
            return
        if len(reason.strip()) > REASON_MAX:
            await refuse(
                interaction,
                task,
                "task.rejected",
                f"reject reason too long ({len(reason.strip())} characters)",
                f"The reason is {len(reason.strip())} characters long; at most {REASON_MAX} are "
                "allowed. Nothing was sent to the factory.",
                via="command",
            )
            return
        await _defer_if_unknown(interaction, task)
        bridge = bridge_of(interaction)
        outcome = await bridge.precheck(task, "rejected", actor_from(interaction, "command"))
        if outcome is not None:
            await answer(interaction, outcome.message)
            return
        tracked = await bridge.store.get_task(task)
        assert tracked is not None  # precheck found or fetched it
        if not await _fits_the_task(interaction, tracked, "rejected"):
            return
        await run_decision(interaction, task, "rejected", "command", notes=reason.strip())

    @app_commands.command(name="ack", description="Acknowledge a task (stops reminders)")
    @app_commands.describe(task="The task (type to search)")
    async def ack(self, interaction: discord.Interaction[Any], task: TaskOption) -> None:
        """Claim the task at the factory; the message shows "👀 acknowledged by @name"."""
        await answer_now(interaction, "⏳ Acknowledging…")
        outcome = await bridge_of(interaction).acknowledge(
            task,
            actor_from(interaction, "command"),
            idempotency_seed=f"interaction:{interaction.id}",
        )
        await answer(interaction, outcome.message)

    @app_commands.command(name="snooze", description="Snooze a task's reminders")
    @app_commands.describe(task="The task (type to search)", duration="For how long")
    @app_commands.choices(duration=SNOOZE_DURATIONS)
    async def snooze(
        self, interaction: discord.Interaction[Any], task: TaskOption, duration: int
    ) -> None:
        """Snooze reminders (recorded by the bridge); the SLA deadline never moves."""
        if snooze_seconds([str(duration)]) is None:
            await refuse(
                interaction,
                task,
                "task.snooze",
                f"snooze value {duration!r} not offered",
                "That is not one of the offered snooze durations (1 hour, 4 hours, 24 hours). "
                "Nothing was changed.",
                via="command",
            )
            return
        await answer_now(interaction, "⏳ Snoozing…")
        outcome = await bridge_of(interaction).snooze(
            task, actor_from(interaction, "command"), duration
        )
        await answer(interaction, outcome.message)

    @app_commands.command(name="pipelines", description="Pipelines with stage and progress")
    @app_commands.describe(status="Only pipelines with this status")
    @app_commands.choices(status=STATUS_CHOICES)
    async def pipelines(
        self, interaction: discord.Interaction[Any], status: str | None = None
    ) -> None:
        """``GET /v1/pipelines``: failed first, then active …; stage and a progress bar."""
        await show_listing(interaction, "pipelines", status or "")

    @app_commands.command(name="blockers", description="What is stuck and why")
    async def blockers(self, interaction: discord.Interaction[Any]) -> None:
        """Reference 002 §4.3: blocking tasks and failed pipelines, most urgent first."""
        await show_listing(interaction, "blockers", "")

    @app_commands.command(name="history", description="One task's audit history")
    @app_commands.describe(task="The task (type to search, or paste an id)")
    async def history(self, interaction: discord.Interaction[Any], task: TaskOption) -> None:
        """Every audited action on the task, oldest first (``store.audit_entries``)."""
        await show_listing(interaction, "history", task)
