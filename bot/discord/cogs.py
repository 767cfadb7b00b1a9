"""The bot's cogs besides ``/factory``: task components, smart batching, the escalation ladder.

discord.py ("Cogs"; :meth:`discord.ext.commands.Cog.cog_load` / ``cog_unload``): a cog's
``cog_load`` runs when :class:`bot.discord.client.BridgeBot` loads it in ``setup_hook`` (once, at
login, before the gateway connects) and its ``cog_unload`` when the bot removes it
(:meth:`~bot.discord.client.BridgeBot.unload_cogs` at shutdown). Each cog gets the bot and the
object it runs in its constructor; :mod:`bot.app` builds them (the one place that wires).

* :class:`TaskCog` — registers the task message's DynamicItems and answers every submission of
  the bridge's forms (:func:`bot.discord.modals.dispatch_modal_submit`);
* :class:`BatchingCog` — registers the batch message's DynamicItems and starts / stops the
  batching runtime;
* :class:`EscalationCog` — starts / stops the escalation ladder runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import discord
from discord.ext import commands

from bot.discord.batch_views import BATCH_DYNAMIC_ITEMS
from bot.discord.client import BridgeBot
from bot.discord.forms import MODAL_HANDLERS
from bot.discord.modals import dispatch_modal_submit
from bot.discord.views import DYNAMIC_ITEMS

if TYPE_CHECKING:
    from bot.discord.batching_runtime import BatchingRuntime
    from bot.ladder import LadderRuntime

__all__ = ["BatchingCog", "EscalationCog", "TaskCog"]


class TaskCog(commands.Cog, name="Tasks"):
    """The task message's buttons, snooze select and forms.

    Parameters
    ----------
    bot:
        The bot the DynamicItems are registered on.
    """

    def __init__(self, bot: BridgeBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        """Register the task message's DynamicItems (buttons of earlier runs work too)."""
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)

    async def cog_unload(self) -> None:
        """Unregister them."""
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Submissions of the bridge's modals go to their handler (``forms.MODAL_HANDLERS``).

        The bridge's modals are not kept in memory (:mod:`bot.discord.modals`): this one
        listener answers every submission, also one made after a restart.
        """
        await dispatch_modal_submit(interaction, MODAL_HANDLERS)


class BatchingCog(commands.Cog, name="Batching"):
    """Smart batching (master plan §7): the batch message's components and the runtime.

    Parameters
    ----------
    bot:
        The bot the batch components are registered on.
    runtime:
        The batching runtime, started in :meth:`cog_load` and stopped in :meth:`cog_unload`.
    """

    def __init__(self, bot: BridgeBot, runtime: BatchingRuntime) -> None:
        self.bot = bot
        self.runtime = runtime

    async def cog_load(self) -> None:
        """Register the batch components, then restore and start the runtime."""
        self.bot.add_dynamic_items(*BATCH_DYNAMIC_ITEMS)
        await self.runtime.start()

    async def cog_unload(self) -> None:
        """Stop the runtime's loops (its state is saved; pending actions are redone at start)."""
        await self.runtime.stop()
        self.bot.remove_dynamic_items(*BATCH_DYNAMIC_ITEMS)


class EscalationCog(commands.Cog, name="Escalation"):
    """The escalation ladder (reminders, DMs, SMS, calls).

    Parameters
    ----------
    bot:
        The bot it is loaded into.
    runtime:
        The ladder runtime, started in :meth:`cog_load` (settles what a crash left, starts
        arming the wake-ups: the app waits for :meth:`LadderRuntime.armed` before it reports
        its start done) and stopped in :meth:`cog_unload`.
    """

    def __init__(self, bot: BridgeBot, runtime: LadderRuntime) -> None:
        self.bot = bot
        self.runtime = runtime

    async def cog_load(self) -> None:
        """Start the ladder runtime; its wake-ups are armed in the background while the
        gateway connects."""
        await self.runtime.begin()

    async def cog_unload(self) -> None:
        """Stop the ladder runtime (steps under way get a moment to finish)."""
        await self.runtime.stop()
