"""The discord.py bot of the bridge: a :class:`discord.ext.commands.Bot` made of cogs.

The bridge has no prefix commands (``command_prefix`` is a mention, there is no message-content
intent and no help command): everything is an application command or a component. What the
bot does lives in cogs (discord.py: "Cogs", https://discordpy.readthedocs.io/en/stable/ext/
commands/cogs.html), built by :mod:`bot.app` and loaded in :meth:`BridgeBot.setup_hook`:

* :class:`bot.discord.cogs.TaskCog` — the task message's buttons, select and forms;
* :class:`bot.discord.factory_cog.FactoryCog` — ``/factory`` (a ``GroupCog``);
* :class:`bot.discord.cogs.BatchingCog` and :class:`bot.discord.cogs.EscalationCog` — start
  their runtime in ``cog_load`` and stop it in ``cog_unload``.

The slash commands are synced to ``DISCORD_GUILD_ID`` once the cogs are loaded. Components
reach the bridge's services through :func:`bot_of` / :func:`bridge_of` (``interaction.client``
is the :class:`BridgeBot`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import discord
from discord.ext import commands

from bot.discord.limits import NO_PINGS

if TYPE_CHECKING:
    from bot.bridge import Bridge

__all__ = ["BridgeBot", "bot_of", "bridge_of"]

log = logging.getLogger(__name__)


class BridgeBot(commands.Bot):
    """The bridge's Discord bot: carries the :class:`~bot.bridge.Bridge` for its cogs.

    Parameters
    ----------
    bridge:
        The service the buttons and commands call (:func:`bridge_of`).
    guild_id:
        ``DISCORD_GUILD_ID``: where the slash commands are synced.
    guild_ready_timeout:
        Seconds discord.py waits for guild data after READY (small in tests).
    """

    bridge: Bridge
    guild_id: int

    def __init__(
        self,
        bridge: Bridge,
        *,
        guild_id: int,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        # MESSAGE_DELETE: a deleted task message is posted again (no message content needed)
        intents.guild_messages = True
        # nothing the bridge sends pings unless the call says whom (see DiscordMessenger.post)
        super().__init__(
            command_prefix=commands.when_mentioned,
            help_command=None,
            intents=intents,
            guild_ready_timeout=guild_ready_timeout,
            allowed_mentions=NO_PINGS,
            # no message cache: the bridge reads only raw events (on_raw_message_delete), and
            # a cache of Message objects costs memory and CPU for every message seen (bench/ladders.py)
            max_messages=None,
        )
        self.bridge = bridge
        self.guild_id = guild_id
        #: Cogs :meth:`setup_hook` loads, in order (:mod:`bot.app` appends them before login;
        #: their app commands are added for ``guild_id``).
        self.initial_cogs: list[commands.Cog] = []
        self.ready_event = asyncio.Event()
        #: False from a gateway disconnect until the session is READY or RESUMED again
        self.connected = False
        #: aware UTC time the gateway session was lost (``None`` while it is up)
        self.disconnected_since: datetime | None = None

    @property
    def guild(self) -> discord.Object:
        """``DISCORD_GUILD_ID`` as a snowflake (where app commands are added and synced)."""
        return discord.Object(id=self.guild_id)

    async def setup_hook(self) -> None:
        """Load the cogs, then sync the guild's application commands (discord.py calls this
        once, at login, before the gateway connects)."""
        for cog in self.initial_cogs:
            await self.add_cog(cog, guild=self.guild)
        self.tree.copy_global_to(guild=self.guild)
        synced = await self.tree.sync(guild=self.guild)
        log.info("synced %d application commands to guild %s", len(synced), self.guild_id)

    async def unload_cogs(self) -> None:
        """Remove every cog, the last loaded first (their ``cog_unload`` stops their runtimes).

        :meth:`bot.app.BridgeApp.stop` calls this before it stops the bridge, so the runtimes
        stop in the reverse order of their start; ``close`` would otherwise do it last.
        """
        for name in reversed(list(self.cogs)):
            await self.remove_cog(name, guild=self.guild)

    async def on_ready(self) -> None:
        """Mark the Discord session ready (``/healthz`` reports it)."""
        log.info("connected to Discord as %s", self.user)
        self._up()

    async def on_resumed(self) -> None:
        """A dropped gateway session was resumed."""
        log.info("Discord session resumed")
        self._up()

    async def on_disconnect(self) -> None:
        """The gateway connection was lost: the session is down until READY/RESUMED
        (``/healthz`` and the heartbeat say so)."""
        if self.connected:
            log.warning("Discord gateway connection lost")
            self.disconnected_since = datetime.now(UTC)
        self.connected = False

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A message was deleted (gateway ``MESSAGE_DELETE``, GUILD_MESSAGES intent): a task
        message that still needs a decision is posted again (:meth:`Bridge.message_deleted`)."""
        if payload.guild_id is None:
            return
        try:
            await self.bridge.message_deleted(payload.message_id)
        except Exception:
            log.exception("repost after the deletion of message %s failed", payload.message_id)

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        """Messages were purged at once (gateway ``MESSAGE_DELETE_BULK``: a moderator's purge,
        discord.py dispatches it as ``raw_bulk_message_delete`` only): each task or batch
        message among them is handled as one deleted alone (:meth:`on_raw_message_delete`)."""
        if payload.guild_id is None:
            return
        for message_id in sorted(payload.message_ids):
            try:
                await self.bridge.message_deleted(message_id)
            except Exception:
                log.exception("repost after the purge of message %s failed", message_id)

    def _up(self) -> None:
        self.connected = True
        self.disconnected_since = None
        self.ready_event.set()

    @property
    def session_ready(self) -> bool:
        """True while the gateway session is up."""
        return (
            self.ready_event.is_set()
            and self.connected
            and not self.is_closed()
            and self.is_ready()
        )


def bot_of(interaction: discord.Interaction[Any]) -> BridgeBot:
    """The :class:`BridgeBot` that received ``interaction`` (the one typed cast of
    ``interaction.client``: every interaction the bridge handles reaches it through its bot)."""
    return cast(BridgeBot, interaction.client)


def bridge_of(interaction: discord.Interaction[Any]) -> Bridge:
    """The :class:`~bot.bridge.Bridge` of the bot that received ``interaction``."""
    return bot_of(interaction).bridge
