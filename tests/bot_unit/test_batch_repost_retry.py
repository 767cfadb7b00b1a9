"""A batch message's repost is tried again only when Discord did not post it: a failure of the
store after the post (the new message exists) is raised as before, and nothing posts a second
copy of the batch every minute while the database is down. A repost the runtime's stop cuts
short stays stored for the next start."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

import bot.discord.batch_messages as batch_messages
import bot.discord.batch_repost as batch_repost
from bot.discord.batch_messages import REPOSTS_STATE_KEY, BatchMessages


class DatabaseDown:
    async def get_batch(self, batch_id: str) -> Any:
        return SimpleNamespace(message_id=100, channel_id=1)

    async def set_batch_message(self, batch_id: str, channel_id: int, message_id: int) -> None:
        raise ConnectionError("database down")  # after Discord created the message

    async def save_state(self, key: str, value: dict[str, Any], *, fenced: bool = False) -> None:
        raise ConnectionError("database down")


class Runtime(BatchMessages):
    def __init__(self) -> None:
        self.store = DatabaseDown()  # type: ignore[assignment]
        self.bridge = SimpleNamespace(access=None)  # type: ignore[assignment]
        self.channel_id = 1
        self._unreposted = {}
        self._owed = {}
        self._reposts = set()
        self._stopping = False
        self.posted = 0

    async def items(self, batch_id: str) -> list[Any]:
        return [SimpleNamespace(task_id="t-1", tracked=SimpleNamespace(is_decided=False))]

    async def post_in(self, channel_id: int, content: str | None, **rendered: Any) -> Any:
        self.posted += 1
        return SimpleNamespace(id=1000 + self.posted)


async def test_a_store_failure_after_the_repost_is_raised_not_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_repost, "render_batch", lambda batch_id, items: {})
    runtime = Runtime()
    with pytest.raises(ConnectionError):
        await runtime.repost("b-1", 100, why="deleted")
    assert runtime.posted == 1
    assert runtime._unreposted == {}  # no retry scheduled: it would post another copy


class Recorded:
    """A store that keeps what is saved."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, Any]] = {}

    async def save_state(self, key: str, value: dict[str, Any], *, fenced: bool = False) -> None:
        self.state[key] = value


async def test_a_repost_cut_short_by_the_stop_stays_stored_for_the_next_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started = asyncio.Event()

    async def hangs(*args: Any, **kwargs: Any) -> int | None:
        started.set()
        await asyncio.Event().wait()  # Discord has not answered yet
        return None

    monkeypatch.setattr(batch_messages, "repost_batch", hangs)
    runtime = Runtime()
    store = Recorded()
    runtime.store = store  # type: ignore[assignment]
    repost = asyncio.create_task(runtime.repost("b-1", 100, why="deleted"))
    await started.wait()
    assert store.state[REPOSTS_STATE_KEY] == {"b-1": [100, "deleted"]}  # stored before trying
    repost.cancel()  # what BatchingRuntime.stop does to the repost tasks
    with pytest.raises(asyncio.CancelledError):
        await repost
    assert store.state[REPOSTS_STATE_KEY] == {"b-1": [100, "deleted"]}
