"""The start-up rebuild keeps the factory's open tasks compact.

At a restart that lost the database, :meth:`bot.reconcile.rebuild.ChannelRebuild.rebuild` gets
every open task (100,000 in ``bench restart``) as a compact snapshot (id and JSON each). It
must make a task model only for the tasks the channel's messages show: turning them all back
into models held ≈ 0.9 GB at 100,000 tasks. The message found still gets its task back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.bridge import Bridge
from bot.reconcile.rebuild import ChannelRebuild
from bot.reconcile.snapshot import OpenSnapshot
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store
from escalation.models import Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
BOT_ID = 77
CHANNEL_ID = 2


@dataclass
class Part:
    """A component or embed: what ``to_dict`` gives."""

    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.data


@dataclass
class Author:
    id: int


@dataclass
class Message:
    id: int
    components: list[Part]
    embeds: list[Part] = field(default_factory=list)
    author: Author = field(default_factory=lambda: Author(BOT_ID))
    reference: None = None


class Channel:
    def __init__(self, messages: list[Message]) -> None:
        self.messages = messages

    async def history(self, *, limit: int) -> Any:
        for message in self.messages[:limit]:
            yield message


class Client:
    """The parts of ``discord.Client`` the rebuild uses: its user and the tasks channel."""

    def __init__(self, messages: list[Message]) -> None:
        self.user = Author(BOT_ID)
        self.channel = Channel(messages)

    def get_partial_messageable(self, channel_id: int, *, guild_id: int) -> Channel:
        assert channel_id == CHANNEL_ID
        return self.channel


def task_message(message_id: int, task_id: str) -> Message:
    buttons = [{"type": 2, "custom_id": f"fb:t:{a}:{task_id}"} for a in ("approve", "reject")]
    return Message(message_id, [Part({"type": 1, "components": buttons})])


def task(n: int) -> Task:
    return Task.model_validate(
        {"id": f"task-{n:04d}", "title": f"Release {n}", "createdAt": NOW.isoformat()}
    )


async def test_only_the_tasks_the_channel_shows_are_made_into_models(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=CHANNEL_ID,
        factory_api_key="key",
        factory_webhook_secret="secret",
    )
    bridge = Bridge(settings=settings, store=store, factory=object(), roster=Roster())  # type: ignore[arg-type]
    snapshot = OpenSnapshot(task(n) for n in range(500))  # the factory's open tasks
    client = Client([task_message(9001, "task-0042")])

    parsed: list[str] = []
    original = Task.model_validate_json

    def counting(cls: type[Task], data: str | bytes, **kwargs: Any) -> Task:
        made = original(data, **kwargs)
        parsed.append(made.id)
        return made

    monkeypatch.setattr(Task, "model_validate_json", classmethod(counting))
    rebuild = ChannelRebuild(bridge, client, history_limit=100)  # type: ignore[arg-type]
    assert await rebuild.rebuild(snapshot) == 1
    monkeypatch.undo()

    assert set(parsed) == {"task-0042"}  # not the 499 others
    adopted = await store.get_task("task-0042")
    assert adopted is not None and adopted.message_id == 9001
    assert adopted.task.title == "Release 42"
    assert await store.get_task("task-0043") is None  # nothing else stored, nothing posted
