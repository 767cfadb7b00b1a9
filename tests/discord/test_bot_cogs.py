"""The bot is a discord.py ``commands.Bot`` made of cogs: ``/factory`` as a GroupCog with its
subcommands and options, and cogs whose load/unload start and stop what they run."""

from __future__ import annotations

from typing import Any

import pytest
from discord import app_commands
from discord.ext import commands

from bot.discord.batch_views import BATCH_DYNAMIC_ITEMS
from bot.discord.client import BridgeBot, bot_of, bridge_of
from bot.discord.cogs import BatchingCog, EscalationCog, TaskCog
from bot.discord.factory_cog import FactoryCog
from bot.discord.pager import PageButton
from bot.discord.views import DYNAMIC_ITEMS

GUILD = 4242


class FakeRuntime:
    """Records start/stop calls in order (stands in for the batching and ladder runtimes)."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def begin(self) -> None:  # the ladder's start on load (arming goes on after it)
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def make_bot() -> BridgeBot:
    bridge: Any = object()
    return BridgeBot(bridge, guild_id=GUILD)


def registered(bot: BridgeBot) -> set[type[Any]]:
    """The DynamicItem classes registered on the bot (discord.py keeps them in its view store)."""
    return set(bot._connection._view_store._dynamic_items.values())


def test_the_bot_has_no_prefix_commands_and_no_message_content() -> None:
    bot = make_bot()
    assert isinstance(bot, commands.Bot)
    assert bot.command_prefix is commands.when_mentioned
    assert not bot.intents.message_content
    assert bot.intents.guilds
    assert bot.help_command is None


async def test_factory_group_cog_has_the_same_subcommands_and_options() -> None:
    bot = make_bot()
    await bot.add_cog(FactoryCog(bot), guild=bot.guild)
    group = bot.tree.get_command("factory", guild=bot.guild)
    assert isinstance(group, app_commands.Group)
    assert group.description == "The AI software factory's decisions"
    options = {
        c.name: [(p.name, p.required, p.autocomplete) for p in c.parameters]
        for c in group.commands
        if isinstance(c, app_commands.Command)
    }
    assert options == {
        "status": [],
        "pending": [("priority", False, False)],
        "approve": [("task", True, True), ("notes", False, False)],
        "reject": [("task", True, True), ("reason", True, False)],
        "ack": [("task", True, True)],
        "snooze": [("task", True, True), ("duration", True, False)],
        "pipelines": [("status", False, False)],
        "blockers": [],
        "history": [("task", True, True)],
    }
    reject = group.get_command("reject")
    assert isinstance(reject, app_commands.Command)
    reason = reject.get_parameter("reason")
    assert reason is not None and (reason.min_value, reason.max_value) == (1, 1000)
    assert PageButton in registered(bot)


async def test_cogs_start_their_runtimes_on_load_and_stop_them_last_first() -> None:
    log: list[str] = []
    bot = make_bot()
    batching: Any = FakeRuntime("batching", log)
    ladder: Any = FakeRuntime("ladder", log)
    for cog in (TaskCog(bot), BatchingCog(bot, batching), EscalationCog(bot, ladder)):
        await bot.add_cog(cog, guild=bot.guild)
    assert log == ["start batching", "start ladder"]
    assert set(DYNAMIC_ITEMS) | set(BATCH_DYNAMIC_ITEMS) <= registered(bot)
    await bot.unload_cogs()
    assert log == ["start batching", "start ladder", "stop ladder", "stop batching"]
    assert not bot.cogs
    assert not (set(DYNAMIC_ITEMS) | set(BATCH_DYNAMIC_ITEMS)) & registered(bot)


@pytest.mark.parametrize("helper", [bot_of, bridge_of])
def test_components_reach_the_bot_and_its_bridge(helper: Any) -> None:
    bot = make_bot()
    interaction: Any = type("Interaction", (), {"client": bot})()
    expected = bot if helper is bot_of else bot.bridge
    assert helper(interaction) is expected


async def test_a_purge_of_task_messages_reposts_each_like_a_single_deletion() -> None:
    """A moderator's purge arrives as MESSAGE_DELETE_BULK (discord.py: only
    ``raw_bulk_message_delete``); each deleted message is handled as one deleted alone, and
    one that fails does not stop the others."""
    import discord

    deleted: list[int] = []

    class Bridge:
        async def message_deleted(self, message_id: int) -> None:
            deleted.append(message_id)
            if message_id == 12:
                raise RuntimeError("Discord is down")

    bot = BridgeBot(Bridge(), guild_id=GUILD)  # type: ignore[arg-type]
    payload = discord.RawBulkMessageDeleteEvent(
        {"ids": ["13", "11", "12"], "channel_id": "5", "guild_id": str(GUILD)}  # type: ignore[typeddict-item]
    )
    await bot.on_raw_bulk_message_delete(payload)
    assert deleted == [11, 12, 13]
