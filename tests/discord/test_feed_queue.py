"""Feed-channel posts: queued, coalesced, bounded, never holding up a task message.

No timer is waited for: the pacer's clock is frozen and its ``sleep`` never returns, so a post
that needed a slot beyond the channel's budget would hang (and the guard fails the test).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import MISSING
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.discord.feed import FeedQueue, not_shown_line, pack_lines
from bot.discord.notifier import DiscordNotifier
from bot.discord.pacing import ChannelPacer
from bot.factory.events import parse_event
from bot.settings import Settings
from bot.store import TrackedTask
from escalation.models import Task

TASKS = 100
FEED = 300
NOW = datetime(2026, 11, 21, 10, tzinfo=UTC)
GUARD = 2.0  # seconds: only to fail instead of hanging; nothing in these tests waits on time


async def forever(_seconds: float) -> None:
    await asyncio.Event().wait()


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def stage_event(n: int) -> Any:
    return parse_event(
        {
            "type": "pipeline.stage_changed",
            "timestamp": "2026-11-21T10:00:00Z",
            "channel": "pipeline:*",
            "data": {
                "pipelineId": f"p-{n}",
                "pipelineName": f"pipeline-{n:03d}",
                "fromStage": "building",
                "toStage": "testing",
                "triggeredBy": "agent-1",
            },
        }
    )


class Discord:
    """A client whose channels record every message created."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, str | None, Any]] = []
        self.next_id = 1_300_000_000_000_000_000
        recorder = self

        class Channel:
            def __init__(self, channel_id: int) -> None:
                self.id = channel_id

            async def send(self, content: str | None = None, **kwargs: Any) -> Any:
                recorder.next_id += 1
                recorder.sent.append((self.id, content, kwargs.get("allowed_mentions")))
                return SimpleNamespace(id=recorder.next_id, channel=self)

        self.client = SimpleNamespace(
            get_partial_messageable=lambda channel_id, guild_id=None: Channel(channel_id),
            get_channel=lambda channel_id: None,
        )

    def contents(self, channel_id: int) -> list[str]:
        return [c or "" for ch, c, _ in self.sent if ch == channel_id]


def notifier(discord_: Discord, **env: Any) -> DiscordNotifier:
    settings = Settings(  # type: ignore[call-arg]
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=TASKS,
        discord_feed_channel_id=FEED,
        factory_api_key="key",
        factory_webhook_secret="secret",
        **env,
    )
    pacer = ChannelPacer(clock=lambda: 0.0, sleep=forever)  # time stands still
    return DiscordNotifier(discord_.client, settings, pacer=pacer, clock=lambda: NOW)  # type: ignore[arg-type]


def critical_task() -> TrackedTask:
    task = Task.model_validate(
        {
            "id": "t-critical",
            "title": "Production is down: approve the rollback",
            "type": "approval",
            "stageName": "production",
            "priority": "critical",
            "createdAt": NOW,
        }
    )
    values: dict[str, object] = {
        name: None
        for name, spec in TrackedTask.__dataclass_fields__.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    values.update(task=task, deadline=NOW + timedelta(hours=1))
    return TrackedTask(**values)  # type: ignore[arg-type]


async def test_a_feed_burst_does_not_hold_up_a_critical_task() -> None:
    discord_ = Discord()
    bot = notifier(discord_)

    async def burst_then_task() -> tuple[int, int]:
        for n in range(100):
            await bot.post_event(stage_event(n))  # returns at once: queued
        return await bot.post_task(critical_task())

    channel_id, _ = await asyncio.wait_for(burst_then_task(), GUARD)
    assert channel_id == TASKS
    assert len(discord_.contents(TASKS)) == 1
    await settle()
    await bot.feed.close(timeout=GUARD)
    feed = discord_.contents(FEED)
    assert 1 <= len(feed) <= 5  # coalesced: within one window of the channel's budget
    assert all(len(message) <= 2000 for message in feed)
    lines = [line for message in feed for line in message.split("\n")]
    assert lines == [f"➡️ **pipeline-{n:03d}**: building → testing" for n in range(100)]
    assert all(am is not None and am.everyone is False for _, _, am in discord_.sent)


async def test_overflow_drops_the_oldest_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    discord_ = Discord()
    bot = notifier(discord_, discord_feed_max_pending=10)

    async def burst() -> None:
        for n in range(47):
            await bot.post_event(stage_event(n))

    await asyncio.wait_for(burst(), GUARD)
    with caplog.at_level(logging.WARNING, logger="bot.discord.feed"):
        await settle()
        await bot.feed.close(timeout=GUARD)
    feed = discord_.contents(FEED)
    lines = [line for message in feed for line in message.split("\n")]
    assert lines[0] == "… 37 earlier pipeline updates not shown (feed rate limit)"
    assert lines[1:] == [f"➡️ **pipeline-{n:03d}**: building → testing" for n in range(37, 47)]
    assert any("37 earlier lines dropped" in r.getMessage() for r in caplog.records)


def test_pack_lines_fills_messages_up_to_the_limit() -> None:
    lines = ["x" * 999, "y" * 999, "z" * 5]
    assert pack_lines(lines) == ("x" * 999 + "\n" + "y" * 999, 2)
    assert pack_lines(["w" * 2500, "v"]) == ("w" * 2500, 1)  # cut by send's fit_content
    assert not_shown_line(1) == "… 1 earlier pipeline update not shown (feed rate limit)"


def http_error(status: int, code: int = 0) -> discord.HTTPException:
    response = SimpleNamespace(status=status, reason="x")
    return discord.HTTPException(response, {"code": code, "message": "x"})  # type: ignore[arg-type]


async def test_a_server_error_is_retried_with_backoff() -> None:
    sent: list[str] = []
    pauses: list[float] = []
    failures = [http_error(503), OSError("reset")]

    async def send(channel_id: int, content: str) -> None:
        if failures:
            raise failures.pop(0)
        sent.append(content)

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    queue = FeedQueue(send, retry_delays=(1.0, 2.0, 5.0), sleep=sleep)
    queue.submit(FEED, "a")
    queue.submit(FEED, "b")
    await queue.close(timeout=GUARD)
    assert sent == ["a\nb"]
    assert pauses == [1.0, 2.0]
    assert queue.posted == 1 and queue.dropped == 0


async def test_a_refused_channel_drops_its_lines_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    async def send(channel_id: int, content: str) -> None:
        calls.append(content)
        raise http_error(403, 50001)

    async def sleep(seconds: float) -> None:
        raise AssertionError("a permanent refusal is not retried")

    queue = FeedQueue(send, sleep=sleep)
    with caplog.at_level(logging.WARNING, logger="bot.discord.feed"):
        queue.submit(FEED, "a")
        queue.submit(FEED, "b")
        await queue.close(timeout=GUARD)
    assert calls == ["a\nb"]
    assert queue.dropped == 2
    assert any("refused" in r.getMessage() for r in caplog.records)
