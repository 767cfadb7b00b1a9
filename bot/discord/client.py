"""The discord.py client of the bridge.

A plain :class:`discord.Client` with an application command tree. ``setup_hook`` registers the
DynamicItems (so old messages' buttons work after a restart) and syncs the ``/factory``
commands to ``DISCORD_GUILD_ID``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord.limits import NO_PINGS
from bot.discord.modals import dispatch_modal_submit
from bot.discord.views import DYNAMIC_ITEMS, MODAL_HANDLERS

if TYPE_CHECKING:
    from bot.bridge import Bridge

__all__ = ["BridgeClient"]

log = logging.getLogger(__name__)


class BridgeClient(discord.Client):
    """Discord client that carries the :class:`~bot.bridge.Bridge` for its components.

    Parameters
    ----------
    bridge:
        The service the buttons and commands call (``interaction.client.bridge``).
    guild_id:
        ``DISCORD_GUILD_ID``: where the slash commands are synced.
    extra_setup:
        Called with the client in ``setup_hook`` before the sync (adds command groups and
        extra DynamicItems, e.g. batch buttons).
    guild_ready_timeout:
        Seconds discord.py waits for guild data after READY (small in tests).
    """

    def __init__(
        self,
        bridge: Bridge,
        *,
        guild_id: int,
        extra_setup: Callable[[BridgeClient], Any] | None = None,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        # nothing the bridge sends pings unless the call says whom (see DiscordMessenger.post)
        super().__init__(
            intents=intents, guild_ready_timeout=guild_ready_timeout, allowed_mentions=NO_PINGS
        )
        self.bridge = bridge
        self.guild_id = guild_id
        self.tree = app_commands.CommandTree(self)
        self._extra_setup = extra_setup
        self.ready_event = asyncio.Event()

    async def setup_hook(self) -> None:
        """Register DynamicItems and sync the guild's application commands."""
        self.add_dynamic_items(*DYNAMIC_ITEMS)
        if self._extra_setup is not None:
            result = self._extra_setup(self)
            if asyncio.iscoroutine(result):
                await result
        guild = discord.Object(id=self.guild_id)
        self.tree.copy_global_to(guild=guild)
        synced = await self.tree.sync(guild=guild)
        log.info("synced %d application commands to guild %s", len(synced), self.guild_id)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Submissions of the bridge's modals go to their handler (``views.MODAL_HANDLERS``).

        The bridge's modals are not kept in memory (:mod:`bot.discord.modals`): this one
        handler answers every submission, also one made after a restart.
        """
        await dispatch_modal_submit(interaction, MODAL_HANDLERS)

    async def on_ready(self) -> None:
        """Mark the Discord session ready (``/healthz`` reports it)."""
        log.info("connected to Discord as %s", self.user)
        self.ready_event.set()

    async def on_resumed(self) -> None:
        """A dropped gateway session was resumed."""
        log.info("Discord session resumed")
        self.ready_event.set()

    @property
    def session_ready(self) -> bool:
        """True while the gateway session is up."""
        return self.ready_event.is_set() and not self.is_closed() and self.is_ready()
