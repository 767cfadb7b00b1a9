"""Channels the bot cannot use, through the real notifier and edit queue, on a fake Discord.

Discord (JSON error codes): 10003 Unknown Channel (the channel was deleted: every request about
it, message edits included), 10008 Unknown Message, 50001 Missing Access (no View Channel:
posts and edits refused), 50013 Missing Permissions (no Send Messages: new messages refused).

What people see: a deleted #factory-tasks, recreated with a new id and configured, gets every
open task (and batch) posted once in the new channel, with no alert; an outage gives ONE alert
(alerts channel and the on-call admin's DM) and ONE recovery, whatever the bridge re-renders in
between; batch messages get the same outage handling as single-task messages.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.bridge import Bridge
from bot.channel_access import ChannelAccess
from bot.discord.batching_runtime import BatchingRuntime
from bot.discord.embeds import NextStep
from bot.discord.notifier import DiscordNotifier
from bot.discord.pacing import ChannelPacer
from bot.message_faults import REPOSTED_NOTE
from bot.roster import Operator, Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task
from tests.support.harness import wait_until

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
OLD = 100  # #factory-tasks before it was deleted
NEW = 101  # #factory-tasks recreated
ALERTS = 200
DAVE = 42  # the on-call admin


def _refusal(code: int) -> discord.HTTPException:
    if code in (10003, 10008):
        words = {10003: "Unknown Channel", 10008: "Unknown Message"}[code]
        return discord.NotFound(
            SimpleNamespace(status=404, reason="Not Found"), {"code": code, "message": words}
        )
    words = {50001: "Missing Access", 50013: "Missing Permissions"}[code]
    return discord.Forbidden(
        SimpleNamespace(status=403, reason="Forbidden"), {"code": code, "message": words}
    )


@dataclass
class FakeDiscord:
    """Guild channels that exist, the bot's refusals per channel (50001 refuses posts and
    edits, 50013 new messages only), messages people deleted; records what Discord accepted."""

    channels: set[int] = field(default_factory=lambda: {OLD, NEW, ALERTS})
    denied: dict[int, int] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    posts: list[tuple[int, int, str | None, dict[str, Any]]] = field(default_factory=list)
    edits: list[tuple[int, int]] = field(default_factory=list)
    tries: int = 0  # requests about task and batch messages, accepted or not
    ids: Any = field(default_factory=lambda: itertools.count(1_300_000_000_000_000_001))

    def _check(self, channel_id: int, *, send: bool) -> None:
        self.tries += 1
        if channel_id not in self.channels:
            raise _refusal(10003)
        code = self.denied.get(channel_id)
        if code == 50001 or (send and code == 50013):
            raise _refusal(code)

    def client(self) -> Any:
        """A discord.Client as the notifier uses it (``bridge`` is set by the caller)."""
        fake = self

        class Message:
            def __init__(self, channel_id: int, message_id: int) -> None:
                self.channel_id, self.message_id = channel_id, message_id

            async def edit(self, **payload: Any) -> None:
                fake._check(self.channel_id, send=False)
                if self.message_id in fake.deleted:
                    raise _refusal(10008)
                fake.edits.append((self.channel_id, self.message_id))

        class Channel:
            def __init__(self, channel_id: int) -> None:
                self.channel_id = channel_id

            async def send(self, content: str | None = None, **kwargs: Any) -> Any:
                if self.channel_id != ALERTS:
                    fake._check(self.channel_id, send=True)
                message_id = next(fake.ids)
                fake.posts.append((self.channel_id, message_id, content, kwargs))
                return SimpleNamespace(id=message_id)

            def get_partial_message(self, message_id: int) -> Message:
                return Message(self.channel_id, message_id)

        return SimpleNamespace(
            get_partial_messageable=lambda channel_id, guild_id=None: Channel(channel_id),
            get_channel=lambda channel_id: None,
            bridge=None,
        )

    def task_posts(self, channel_id: int) -> list[tuple[int, str | None]]:
        """(message id, content) of the task and batch messages posted in ``channel_id``."""
        return [(m, c) for ch, m, c, kw in self.posts if ch == channel_id and "embed" in kw]


class Told:
    """What the alerts channel and DMs received."""

    def __init__(self) -> None:
        self.channel: list[str] = []
        self.dms: list[str] = []

    async def send(self, channel_id: int, text: str) -> None:
        assert channel_id == ALERTS
        self.channel.append(text)

    async def send_dm(self, user_id: int, text: str) -> None:
        assert user_id == DAVE
        self.dms.append(text)

    @property
    def outages(self) -> int:
        return sum("cannot use" in t for t in self.channel)

    @property
    def recoveries(self) -> int:
        return sum("can use the channel again" in t for t in self.channel)


@dataclass
class Rig:
    bridge: Bridge
    notifier: DiscordNotifier
    access: ChannelAccess
    told: Told
    runtime: BatchingRuntime | None = None

    async def close(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()
        await self.notifier.edits.close()


@pytest.fixture
async def rigs(store: Store) -> AsyncIterator[Callable[..., Any]]:
    """``await make(fake, tasks_channel, batch=False)``: a bridge (one process) on ``store``."""
    made: list[Rig] = []

    async def make(fake: FakeDiscord, tasks_channel: int, *, batch: bool = False) -> Rig:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            discord_bot_token="t",
            discord_guild_id=1,
            discord_tasks_channel_id=tasks_channel,
            discord_alerts_channel_id=ALERTS,
            factory_api_key="k",
            factory_webhook_secret="s",
            batch_enabled=batch,
            # long enough that the tasks a test offers one after the other join one batch on
            # a loaded machine too (at 10 ms the first was posted alone now and then)
            batch_group_wait_seconds=0.5,
        )
        roster = Roster((Operator(name="dave", discord_user_id=DAVE, on_call=True, admin=True),))
        # the batcher's group wait runs on the clock: it must move for a batch to be posted
        clock = (lambda: datetime.now(UTC)) if batch else (lambda: NOW)
        bridge = Bridge(
            settings=settings,
            store=store,
            factory=None,  # type: ignore[arg-type]
            roster=roster,
            clock=clock,
        )
        unpaced = ChannelPacer(max_messages=10_000, per_seconds=1)
        client = fake.client()
        client.bridge = bridge  # batch items are re-rendered through bridge.batcher
        notifier = DiscordNotifier(
            client, settings, clock=lambda: NOW, pacer=unpaced, edit_pacer=unpaced
        )
        notifier.on_edit_fault = bridge.edit_failed  # as bot.bridge_app wires it
        bridge.attach_notifier(notifier)
        told = Told()
        access = ChannelAccess(
            store=store,
            roster=roster,
            send=told.send,
            send_dm=told.send_dm,
            alerts_channel_id=ALERTS,
            retry=bridge.show_again,
            interval_seconds=60,  # the rounds are run by the tests (retry_waiting)
        )
        bridge.access = access
        rig = Rig(bridge, notifier, access, told)
        if batch:
            rig.runtime = BatchingRuntime(bridge, notifier)
            bridge.batcher = rig.runtime
            await rig.runtime.start()
        made.append(rig)
        return rig

    yield make
    for rig in made:
        await rig.close()


async def post_task(bridge: Bridge, task_id: str = "t-1") -> TrackedTask:
    task = Task(id=task_id, title="Release", priority="high", created_at=NOW)  # type: ignore[arg-type]
    return await bridge.post_single(await bridge.track(task))


def routine(task_id: str) -> Task:
    return Task.model_validate(
        {
            "id": task_id,
            "title": task_id,
            "type": "review",
            "stageName": "review",
            "priority": "low",
            "createdAt": NOW,
            "context": {
                "testResults": {"total": 3, "passed": 3, "failed": 0, "coveragePercent": 95}
            },
        }
    )


async def batch_of(rig: Rig, store: Store, *task_ids: str) -> None:
    """Offer routine tasks to the batcher (their batch is posted by its worker)."""
    for task_id in task_ids:
        await rig.bridge.show_task(routine(task_id))


async def rows(store: Store, *task_ids: str) -> list[TrackedTask]:
    return await store.tasks_by_ids(list(task_ids))


async def settled(rig: Rig, fake: FakeDiscord, tries: int) -> None:
    """Wait until Discord got ``tries`` requests and the bridge handled their outcomes."""
    await wait_until(lambda: fake.tries >= tries, timeout=5, what=f"{tries} requests")
    await wait_until(
        lambda: not rig.notifier._late and rig.notifier.edits.waiting(OLD) == 0,
        timeout=5,
        what="late outcomes handled",
    )


# --------------------------------------------------------------------------- single tasks
async def test_deleted_tasks_channel_reposts_the_open_task_once_in_the_new_channel(
    store: Store, rigs: Callable[..., Any]
) -> None:
    fake = FakeDiscord()
    before = await rigs(fake, OLD)
    await post_task(before.bridge)
    await before.close()
    # #factory-tasks is deleted, recreated as NEW, configured, and the bridge restarted
    fake.channels.discard(OLD)
    after = await rigs(fake, NEW)
    await store.set_acknowledged("t-1", 0, "alice", NOW)
    await after.bridge.refresh_message("t-1")
    for _ in range(3):
        await after.access.retry_waiting()
        await after.bridge.show_again("t-1")
    [(new_id, note)] = fake.task_posts(NEW)
    assert note == REPOSTED_NOTE
    row = await store.get_task("t-1")
    assert row is not None and (row.channel_id, row.message_id) == (NEW, new_id)
    assert len(fake.task_posts(OLD)) == 1  # the original, nothing more
    assert after.told.channel == [] and after.told.dms == []
    assert after.access.health() is True and after.access.waiting == []
    entries = [(e.action, e.outcome) for e in await store.audit_entries(task_id="t-1")]
    assert entries.count(("message.reposted", "ok")) == 1
    assert any("Unknown Channel" in (e.detail or "") for e in await store.audit_entries())


async def test_lost_view_channel_gives_one_alert_and_one_recovery_whatever_is_re_rendered(
    store: Store, rigs: Callable[..., Any]
) -> None:
    fake = FakeDiscord()
    rig = await rigs(fake, OLD)
    steps = iter(range(100))
    rig.notifier.next_step = lambda t: NextStep(f"step {next(steps)}", NOW + timedelta(hours=1))
    await post_task(rig.bridge)
    fake.denied[OLD] = 50001  # View Channel revoked
    # the ladder moves on: cosmetic re-renders ("Next escalation") nobody waits for
    tries = fake.tries
    await rig.bridge.refresh_message("t-1")
    await settled(rig, fake, tries + 1)
    assert rig.told.outages == 1 and rig.access.health() == "no access to channel 100"
    # more re-renders and retry rounds while it lasts: nothing proves the channel usable
    for _ in range(3):
        tries = fake.tries
        await rig.bridge.refresh_message("t-1")
        assert rig.told.recoveries == 0 and rig.access.health() != True  # noqa: E712
        await settled(rig, fake, tries + 1)
        await rig.access.retry_waiting()
        assert rig.access.health() == "no access to channel 100"
    assert rig.told.channel and rig.told.recoveries == 0 and rig.told.outages == 1
    assert len(rig.told.dms) == 1
    # access is back: the next round's edit is accepted, the recovery is said once
    del fake.denied[OLD]
    await rig.access.retry_waiting()
    await settled(rig, fake, fake.tries)
    assert rig.access.health() is True and rig.access.waiting == []
    assert (rig.told.outages, rig.told.recoveries, len(rig.told.dms)) == (1, 1, 2)
    assert fake.edits  # the message was brought up to date


# --------------------------------------------------------------------------- batches
async def test_batch_post_refused_alerts_once_waits_and_is_posted_when_access_is_back(
    store: Store, rigs: Callable[..., Any]
) -> None:
    fake = FakeDiscord(denied={OLD: 50013})  # no Send Messages in #factory-tasks
    rig = await rigs(fake, OLD, batch=True)
    await batch_of(rig, store, "t-a", "t-b", "t-c")
    await wait_until(lambda: rig.told.outages == 1, timeout=5, what="the outage alert")
    assert rig.access.health() == "no Send Messages in channel 100"
    assert len(rig.told.dms) == 1
    assert [r.message_id for r in await rows(store, "t-a", "t-b", "t-c")] == [None] * 3
    await rig.access.retry_waiting()  # still refused: nothing more is said
    await wait_until(lambda: fake.tries >= 2, timeout=5, what="the retried post")
    assert (rig.told.outages, len(rig.told.dms)) == (1, 1)
    del fake.denied[OLD]
    await rig.access.retry_waiting()

    async def shown() -> bool:
        return all(r.message_id is not None for r in await rows(store, "t-a", "t-b", "t-c"))

    await wait_until(shown, timeout=5, what="the batch posted")
    await wait_until(lambda: rig.told.recoveries == 1, timeout=5, what="the recovery")
    [(message_id, _)] = fake.task_posts(OLD)  # one batch message, no single posts
    assert {r.message_id for r in await rows(store, "t-a", "t-b", "t-c")} == {message_id}
    assert rig.access.health() is True and rig.access.waiting == []
    assert (rig.told.outages, rig.told.recoveries, len(rig.told.dms)) == (1, 1, 2)


async def posted_batch(rig: Rig, store: Store, fake: FakeDiscord) -> int:
    await batch_of(rig, store, "t-a", "t-b")

    async def shown() -> bool:
        return all(r.message_id is not None for r in await rows(store, "t-a", "t-b"))

    await wait_until(shown, timeout=5, what="the batch posted")
    [(message_id, _)] = fake.task_posts(OLD)
    return message_id


async def test_batch_edit_refused_alerts_once_and_recovers_once(
    store: Store, rigs: Callable[..., Any]
) -> None:
    fake = FakeDiscord()
    rig = await rigs(fake, OLD, batch=True)
    await posted_batch(rig, store, fake)
    assert rig.runtime is not None
    fake.denied[OLD] = 50001  # View Channel revoked
    await store.set_acknowledged("t-a", 0, "alice", NOW)
    await rig.bridge.refresh_message("t-a")  # re-renders the batch message
    assert rig.told.outages == 1 and len(rig.told.dms) == 1
    assert rig.access.health() == "no access to channel 100"
    for name in ("t-b", "t-a"):  # more refreshes of batched tasks while it lasts
        await store.set_acknowledged(name, 0, "bob", NOW)
        await rig.bridge.refresh_message(name)
        await rig.access.retry_waiting()
        assert rig.told.recoveries == 0 and rig.access.health() != True  # noqa: E712
    del fake.denied[OLD]
    edits = len(fake.edits)
    await rig.access.retry_waiting()
    assert len(fake.edits) == edits + 1
    assert rig.access.health() is True and rig.access.waiting == []
    assert (rig.told.outages, rig.told.recoveries, len(rig.told.dms)) == (1, 1, 2)


async def test_batch_repost_refused_raises_nothing_alerts_and_reposts_once_later(
    store: Store, rigs: Callable[..., Any]
) -> None:
    fake = FakeDiscord()
    rig = await rigs(fake, OLD, batch=True)
    message_id = await posted_batch(rig, store, fake)
    fake.denied[OLD] = 50013
    fake.deleted.add(message_id)
    await rig.bridge.message_deleted(message_id)  # the gateway's MESSAGE_DELETE: no exception
    assert rig.told.outages == 1 and rig.access.health() == "no Send Messages in channel 100"
    await rig.access.retry_waiting()
    assert len(fake.task_posts(OLD)) == 1 and rig.told.outages == 1
    del fake.denied[OLD]
    await rig.access.retry_waiting()
    await rig.access.retry_waiting()
    [_, (new_id, note)] = fake.task_posts(OLD)
    assert note == REPOSTED_NOTE
    assert {r.message_id for r in await rows(store, "t-a", "t-b")} == {new_id}
    assert rig.access.health() is True and rig.access.waiting == []
    assert (rig.told.outages, rig.told.recoveries) == (1, 1)


async def test_deleted_tasks_channel_reposts_a_batch_once_in_the_new_channel(
    store: Store, rigs: Callable[..., Any]
) -> None:
    fake = FakeDiscord()
    before = await rigs(fake, OLD, batch=True)
    await posted_batch(before, store, fake)
    await before.close()
    fake.channels.discard(OLD)
    after = await rigs(fake, NEW, batch=True)
    await store.set_acknowledged("t-a", 0, "alice", NOW)
    await after.bridge.refresh_message("t-a")
    await after.bridge.refresh_message("t-b")
    [(new_id, note)] = fake.task_posts(NEW)
    assert note == REPOSTED_NOTE
    assert {(r.channel_id, r.message_id) for r in await rows(store, "t-a", "t-b")} == {
        (NEW, new_id)
    }
    assert after.told.channel == [] and after.access.health() is True
