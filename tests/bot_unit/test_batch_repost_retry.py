"""A batch message's repost is tried again only when Discord did not post it: a failure of the
store after the post (the new message exists) is raised as before, and nothing posts a second
copy of the batch every minute while the database is down."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

import bot.discord.batch_repost as batch_repost
from bot.discord.batch_messages import BatchMessages


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
