"""What a person sees in the emulated Discord, read the same way by every end-to-end test."""

from __future__ import annotations

from sandbox.discord_emulator import InteractionRecord, RecordedMessage
from sandbox.world import TASKS_CHANNEL_ID, World

__all__ = ["fields", "final_reply", "task_messages"]


def task_messages(world: World) -> list[RecordedMessage]:
    """Non-ephemeral messages with an embed the bot posted in #factory-tasks, oldest first."""
    return [
        m
        for m in world.discord.messages(TASKS_CHANNEL_ID)
        if not m.deleted and not m.ephemeral and m.embeds
    ]


def fields(message: RecordedMessage) -> dict[str, str]:
    """The first embed's fields by name."""
    return {f["name"]: f["value"] for f in message.embeds[0].get("fields", [])}


async def final_reply(world: World, rec: InteractionRecord, timeout: float = 10) -> str:
    """The ephemeral answer to ``rec`` once it no longer says "⏳ …" (waits up to ``timeout``
    seconds; raises ``TimeoutError`` when none came)."""
    await rec.response()
    await world.discord.wait_for(
        lambda: bool(rec.reply_content) and not (rec.reply_content or "").startswith("⏳"),
        timeout,
    )
    return rec.reply_content or ""
