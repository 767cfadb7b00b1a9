"""Lost task messages and channels the bot cannot use, on the bridge with a fake notifier.

Discord: an edit of a deleted message answers 10008 Unknown Message; 10003 / 50001 / 50013 mean
the channel is gone or the bot lost access or a permission (bot.message_faults).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest

from bot.bridge import Bridge
from bot.channel_access import ChannelAccess
from bot.factory.events import FactoryEvent
from bot.message_faults import REPOSTED_NOTE, ChannelUnavailable, MessageGone
from bot.roster import Operator, Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task, TaskDecision, TaskStatus

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
CHANNEL = 100
ALERTS = 200


class FakeNotifier:
    """Posts message ids 1, 2, …; ``gone`` message ids answer 10008 on edit; while ``denied``
    every post and edit answers 50013; while ``queued`` an edit returns without being sent (it
    waits for the channel's edit budget). Tells ``on_edit_sent`` of every edit Discord accepts,
    as the real notifier does."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str | None]] = []
        self.gone: set[int] = set()
        self.denied = False
        self.queued = False
        self.on_edit_sent: Callable[[str, int], Awaitable[None]] | None = None

    async def post_task(self, tracked: TrackedTask, *, note: str | None = None) -> tuple[int, int]:
        await asyncio.sleep(0)
        if self.denied:
            raise ChannelUnavailable(CHANNEL, 50013, "no Send Messages in #factory-tasks")
        self.posts.append((tracked.task_id, note))
        return CHANNEL, len(self.posts)

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        assert tracked.message_id is not None
        if self.queued:
            return
        if self.denied:
            raise ChannelUnavailable(CHANNEL, 50013, "no Send Messages in #factory-tasks")
        if tracked.message_id in self.gone:
            raise MessageGone(CHANNEL, tracked.message_id)
        if self.on_edit_sent is not None:
            await self.on_edit_sent(tracked.task_id, CHANNEL)

    async def post_event(self, event: FactoryEvent) -> None:
        return None


class Told:
    def __init__(self) -> None:
        self.channel: list[tuple[int, str]] = []
        self.dms: list[tuple[int, str]] = []

    async def send(self, channel_id: int, text: str) -> None:
        self.channel.append((channel_id, text))

    async def send_dm(self, user_id: int, text: str) -> None:
        self.dms.append((user_id, text))


Rig = tuple[Bridge, FakeNotifier, ChannelAccess, Told, Store]


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    store = Store(database_url)
    await store.create_schema()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        discord_bot_token="t",
        discord_guild_id=1,
        discord_tasks_channel_id=CHANNEL,
        discord_alerts_channel_id=ALERTS,
        factory_api_key="k",
        factory_webhook_secret="s",
        batch_enabled=False,
    )
    roster = Roster(
        (
            Operator(name="dave", discord_user_id=42, on_call=True, admin=True),
            Operator(name="alice", discord_user_id=43, on_call=True),
        )
    )
    bridge = Bridge(
        settings=settings,
        store=store,
        factory=None,  # type: ignore[arg-type]
        roster=roster,
        clock=lambda: NOW,
    )
    notifier = FakeNotifier()
    bridge.attach_notifier(notifier)
    told = Told()
    access = ChannelAccess(
        store=store,
        roster=roster,
        send=told.send,
        send_dm=told.send_dm,
        alerts_channel_id=ALERTS,
        retry=bridge.show_again,
        interval_seconds=60,
    )
    bridge.access = access
    try:
        yield bridge, notifier, access, told, store
    finally:
        await store.close()


async def posted_task(bridge: Bridge, task_id: str = "t-1") -> TrackedTask:
    task = Task(id=task_id, title="Release", priority="high", created_at=NOW)  # type: ignore[arg-type]
    return await bridge.post_single(await bridge.track(task))


async def actions(store: Store, task_id: str) -> list[tuple[str, str]]:
    return [(e.action, e.outcome) for e in await store.audit_entries(task_id=task_id)]


async def test_unknown_message_on_edit_reposts_once_even_with_the_gateway_event(rig: Rig) -> None:
    bridge, notifier, _, _, store = rig
    tracked = await posted_task(bridge)
    assert tracked.message_id == 1
    notifier.gone.add(1)
    # the failed edit and the gateway's MESSAGE_DELETE about the same message, at once
    await asyncio.gather(bridge.refresh_message("t-1"), bridge.message_deleted(1))
    assert notifier.posts == [("t-1", None), ("t-1", REPOSTED_NOTE)]
    fresh = await store.get_task("t-1")
    assert fresh is not None and fresh.message_id == 2
    assert (await actions(store, "t-1")).count(("message.reposted", "ok")) == 1


async def test_decided_task_is_not_reposted(rig: Rig) -> None:
    bridge, notifier, _, _, store = rig
    tracked = await posted_task(bridge)
    done = tracked.task.model_copy(
        update={"decision": TaskDecision.APPROVED, "status": TaskStatus.COMPLETED}
    )
    await bridge.track(done)
    await bridge.message_deleted(1)
    assert notifier.posts == [("t-1", None)]
    assert ("message.deleted", "not reposted") in await actions(store, "t-1")


async def test_channel_unavailable_keeps_the_task_pending_alerts_once_and_resumes(
    rig: Rig,
) -> None:
    bridge, notifier, access, told, store = rig
    notifier.denied = True
    first = await posted_task(bridge, "t-1")
    await posted_task(bridge, "t-2")
    assert not first.has_message
    assert access.health() == "no Send Messages in #factory-tasks"
    assert sorted(access.waiting) == ["t-1", "t-2"]
    assert told.channel == [(ALERTS, told.channel[0][1])]  # one alert for the outage
    assert "no Send Messages in #factory-tasks" in told.channel[0][1]
    assert [uid for uid, _ in told.dms] == [42]  # the on-call admin, not alice
    await access.retry_waiting()  # still denied: nothing new is said
    assert len(told.channel) == 1 and len(told.dms) == 1
    notifier.denied = False
    await access.retry_waiting()
    assert [p for p, _ in notifier.posts] == ["t-1", "t-2"]
    assert access.health() is True and access.waiting == []
    assert "again" in told.channel[-1][1] and len(told.dms) == 2
    assert ("channel.unavailable", "alerted") in await actions(store, "t-1")


async def test_the_alerts_channel_itself_broken_is_not_alerted_in(rig: Rig) -> None:
    _, _, access, told, _ = rig
    await access.lost(ChannelUnavailable(ALERTS, 10003, "#factory-alerts does not exist"), "t-9")
    assert told.channel == []
    assert [uid for uid, _ in told.dms] == [42]


async def test_an_edit_returning_unsent_does_not_end_an_outage(rig: Rig) -> None:
    """One outage, one alert, one recovery: an edit that returned without Discord accepting
    anything (still queued, nothing to change, a batch render) proves nothing."""
    bridge, notifier, access, told, _ = rig
    await posted_task(bridge)
    notifier.denied = True
    await bridge.refresh_message("t-1")  # refused: the outage starts
    assert access.health() == "no Send Messages in #factory-tasks"
    notifier.queued = True  # the next edits wait for the channel's edit budget
    for _ in range(3):
        await bridge.refresh_message("t-1")
        await access.retry_waiting()
        assert access.health() == "no Send Messages in #factory-tasks"
        assert access.waiting == ["t-1"]
    assert len(told.channel) == 1 and len(told.dms) == 1
    notifier.queued = notifier.denied = False
    await access.retry_waiting()  # the edit is sent and accepted
    assert access.health() is True and access.waiting == []
    assert len(told.channel) == 2 and "again" in told.channel[1][1]
    assert len(told.dms) == 2
    await access.retry_waiting()
    await bridge.refresh_message("t-1")
    assert len(told.channel) == 2 and len(told.dms) == 2
