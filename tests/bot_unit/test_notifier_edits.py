"""How the notifier hands task-message edits to the edit queue (issue 17).

A render that only moves the "Next escalation" lines is cosmetic (may be coalesced or dropped in
a storm); one that shows an acknowledgement, a decision or a breach is important (never
dropped); a render identical to what the message shows is not sent at all.
"""

from __future__ import annotations

import asyncio
from dataclasses import MISSING, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from bot.discord.embeds import NextStep
from bot.discord.notifier import DiscordNotifier
from bot.settings import Settings
from bot.store import TrackedTask
from escalation.models import Task

CHANNEL = 4242
MESSAGE = 1_300_000_000_000_000_001
NOW = datetime(2026, 11, 21, 10, tzinfo=UTC)


def tracked(**state: object) -> TrackedTask:
    task = Task.model_validate(
        {
            "id": "t-1",
            "title": "Release GHL MCP server v1.4",
            "type": "approval",
            "stageName": "review",
            "priority": "high",
            "createdAt": NOW,
        }
    )
    values: dict[str, object] = {
        name: None
        for name, spec in TrackedTask.__dataclass_fields__.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    values.update(task=task, deadline=NOW + timedelta(hours=4))
    values.update(channel_id=CHANNEL, message_id=MESSAGE)
    values.update(state)
    return TrackedTask(**values)  # type: ignore[arg-type]


class Recorder:
    """A Discord client with one message: records the edits it receives."""

    def __init__(self) -> None:
        self.edits: list[dict[str, Any]] = []
        recorder = self

        class Message:
            async def edit(self, **payload: Any) -> None:
                recorder.edits.append(payload)

        channel = SimpleNamespace(get_partial_message=lambda message_id: Message())
        self.client = SimpleNamespace(
            get_partial_messageable=lambda channel_id, guild_id=None: channel,
            get_channel=lambda channel_id: None,
        )


def make() -> tuple[DiscordNotifier, Recorder, list[bool]]:
    settings = Settings(  # type: ignore[call-arg]
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=CHANNEL,
        factory_api_key="key",
        factory_webhook_secret="secret",
    )
    recorder = Recorder()
    notifier = DiscordNotifier(recorder.client, settings, clock=lambda: NOW)  # type: ignore[arg-type]
    flags: list[bool] = []
    submit = notifier.edits.submit

    def spy(channel_id: int, message_id: int, payload: Any, *, important: bool) -> Any:
        flags.append(important)
        return submit(channel_id, message_id, payload, important=important)

    notifier.edits.submit = spy  # type: ignore[method-assign]
    return notifier, recorder, flags


async def test_next_escalation_alone_is_cosmetic_an_acknowledgement_is_not() -> None:
    notifier, recorder, flags = make()
    step = {"now": NextStep("reminder DM", NOW + timedelta(minutes=30))}
    notifier.next_step = lambda t: step["now"]
    shown = tracked()
    await notifier.edit_task(shown)  # nothing known of the message yet: counts as a change
    step["now"] = NextStep("reminder @mention", NOW + timedelta(hours=2), ("reminder DM sent",))
    await notifier.edit_task(shown)  # cosmetic: queued, nobody waits for it
    for _ in range(50):  # let the queue send it (no timer involved: the budget is free)
        if len(recorder.edits) == 2:
            break
        await asyncio.sleep(0)
    await notifier.edit_task(shown)  # the same render again: not sent
    acked = replace(shown, acknowledged_by_name="alice", acknowledged_at=NOW)
    await notifier.edit_task(acked)
    assert flags == [True, False, True]
    assert len(recorder.edits) == 3
    status = {f.name: f.value for f in recorder.edits[-1]["embed"].fields}
    assert "acknowledged by alice" in status["Status"]
    await notifier.edits.close()


async def test_a_breach_shown_is_important() -> None:
    notifier, recorder, flags = make()
    await notifier.edit_task(tracked())
    notifier.clock = lambda: NOW + timedelta(hours=5)  # past the 4 h deadline
    await notifier.edit_task(tracked())
    assert flags == [True, True]
    deadline = {f.name: f.value for f in recorder.edits[-1]["embed"].fields}["SLA Deadline"]
    assert "SLA breached" in deadline
    await asyncio.sleep(0)
    await notifier.edits.close()
