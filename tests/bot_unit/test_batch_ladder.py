"""Where smart batching and the escalation ladder meet: one bridge with the real
:class:`bot.ladder.LadderRuntime` and the real :class:`bot.discord.batching_runtime.BatchingRuntime`
on one store, driven by a fake clock (fakes of ``test_ladder_runtime`` and
``test_batching_runtime``)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.bridge import Bridge
from bot.discord.batching_runtime import BatchingRuntime
from bot.ladder import LadderRuntime
from bot.roster import Roster
from bot.store import Store
from escalation.models import Priority, Task
from tests.bot_unit.test_batching_runtime import FakeNotifier as _BaseNotifier
from tests.bot_unit.test_ladder_runtime import (
    ALICE,
    DAVE,
    TASKS,
    Clock,
    FakeFactory,
    FakeMessenger,
    FakePager,
    make_settings,
)

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Notifier(_BaseNotifier):
    """The batching test's fake notifier; edit_task routes batch items to the batcher as the
    real DiscordNotifier.edit_task does (``client.bridge.batcher.refresh_batch``)."""

    batcher: Any = None
    task_edits: list[str] = field(default_factory=list)

    async def post_task(self, tracked, note=None):  # type: ignore[override]
        message = await self.send(TASKS, single=tracked.task_id)
        return TASKS, message.id

    async def edit_task(self, tracked, *, wait=True) -> None:  # type: ignore[override]
        if tracked.batch_id is not None and self.batcher is not None:
            await self.batcher.refresh_batch(tracked.batch_id)
            return
        self.task_edits.append(tracked.task_id)


@dataclass
class MixRig:
    store: Store
    bridge: Bridge
    ladder: LadderRuntime
    batching: BatchingRuntime
    notifier: Notifier
    messenger: FakeMessenger
    pager: FakePager
    factory: FakeFactory
    clock: Clock

    def task(
        self,
        task_id: str,
        *,
        priority: Priority = Priority.MEDIUM,
        created: datetime | None = None,
        sla_seconds: float | None = None,
        **extra: Any,
    ) -> Task:
        created = created or self.clock()
        data = {
            "id": task_id,
            "title": f"Task {task_id}",
            "type": "review",
            "stageName": "review",
            "priority": priority.value,
            "createdAt": created,
            "context": {
                "testResults": {"total": 3, "passed": 3, "failed": 0, "coveragePercent": 95}
            },
        }
        if sla_seconds is not None:
            data["slaDeadline"] = created + timedelta(seconds=sla_seconds)
        data.update(extra)
        task = Task.model_validate(data)
        self.factory.tasks[task_id] = task
        return task

    async def drain_batching(self) -> None:
        """Run the batcher's tick and carry out its queued actions (the loops are not started)."""
        await self.batching._apply(lambda b, now: b.tick(now), wake=False)
        while not self.batching._queue.empty():
            await self.batching._carry_out(self.batching._queue.get_nowait())

    async def at(self, when: datetime) -> None:
        self.clock.now = when
        await self.drain_batching()
        for _ in range(20):
            await self.ladder.tick()
            await self.ladder.drain()
            due = [t for t in self.ladder._wake.values() if t <= when.timestamp()]
            if not due:
                break
        await self.drain_batching()


async def at_the_factory(rig: MixRig, task_id: str, *, decided: bool = False) -> None:
    """A change of the task at the factory, as its event brings it: approved there
    (``decided``), else escalated one level (its priority unchanged: still routine)."""
    data = rig.factory.tasks[task_id].model_dump(mode="json", by_alias=True)
    now = rig.clock().isoformat()
    if decided:
        data.update(status="completed", decision="approved", decidedBy="u-x", decidedAt=now)
    else:
        data["escalationLevel"] = 1
    data["updatedAt"] = now
    await rig.bridge.apply_factory_task(Task.model_validate(data))


async def make_mix(path: str, **settings: Any) -> MixRig:
    clock = Clock(START)
    store = Store(f"sqlite:///{path}")
    await store.create_schema()
    factory = FakeFactory(clock)
    values = {"batch_group_wait_seconds": 30}
    values.update(settings)
    bridge = Bridge(
        settings=make_settings(**values),
        store=store,
        factory=factory,  # type: ignore[arg-type]
        roster=Roster((ALICE, DAVE)),
        clock=clock,
    )
    notifier = Notifier(ids=itertools.count(7000))
    bridge.attach_notifier(notifier)  # type: ignore[arg-type]
    messenger, pager = FakeMessenger(), FakePager()
    ladder = LadderRuntime(
        bridge=bridge, messenger=messenger, pager=pager, clock=clock, retry_delays=(0.0, 0.0, 0.0)
    )
    bridge.escalation = ladder
    await ladder.recover()
    batching = BatchingRuntime(bridge, notifier)  # type: ignore[arg-type]
    bridge.batcher = batching
    notifier.batcher = batching
    return MixRig(store, bridge, ladder, batching, notifier, messenger, pager, factory, clock)


async def test_the_ladder_leaves_a_task_waiting_for_its_batch_message_alone(tmp_path: Path) -> None:
    """An event about a routine task still in its group wait (here ``task.escalated``, still
    medium) must not run its overdue steps: they would reply to no message and DM about a task
    nobody can see yet. They are taken once the batch message is posted, on it."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        rig.clock.now = START + timedelta(seconds=200)  # the bridge back after downtime
        for name in ("a", "b"):  # created 200 s ago, first seen now
            await rig.bridge.show_task(rig.task(name, created=START, sla_seconds=3600))
        await rig.at(rig.clock() + timedelta(seconds=1))
        assert rig.notifier.sent == []  # both wait for their group (30 s)
        await at_the_factory(rig, "a")
        await rig.at(rig.clock() + timedelta(seconds=2))
        assert rig.messenger.posts == [] and rig.messenger.dms == []
        await rig.at(START + timedelta(seconds=240))  # the batch message is posted
        [batch] = rig.notifier.sent
        replies = {p["reply_to"] for p in rig.messenger.posts}
        assert replies == {batch.id}  # every reminder replies to the batch message
        audit = [(e.task_id, e.action) for e in await rig.store.audit_entries(task_id="a")]
        assert ("a", "escalation.reply") in audit  # a's due reminder, on the batch message
    finally:
        await rig.store.close()


async def test_a_batch_message_shows_which_items_breached_their_sla(tmp_path: Path) -> None:
    """The ladder's "🚨 SLA breached @here" alert links to the batch message: the breached
    items say so there, as a single task's message does."""
    from bot.discord.batch_views import render_batch

    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        await rig.bridge.show_task(rig.task("a", sla_seconds=600))
        await rig.bridge.show_task(rig.task("b", sla_seconds=6000))
        await rig.at(START + timedelta(seconds=31))  # the batch message
        await rig.at(START + timedelta(seconds=605))  # a breaches, b does not
        assert any("SLA breached" in p["content"] for p in rig.messenger.posts)
        stored = await rig.store.get_task("a")
        assert stored is not None and stored.batch_id is not None
        items = await rig.batching.items(stored.batch_id)
        lines = render_batch(stored.batch_id, items)["embed"].description.splitlines()
        [line_a] = [line for line in lines if "Task a" in line]
        [line_b] = [line for line in lines if "Task b" in line]
        assert "🚨 SLA breached" in line_a and "SLA breached" not in line_b
    finally:
        await rig.store.close()


async def test_a_task_left_alone_in_its_group_gets_its_own_message(tmp_path: Path) -> None:
    """Two routine tasks wait for their group; one is decided at the factory meanwhile. The
    other is left alone: it gets the normal single-task message (README "Smart batching"),
    with Snooze and Details, not a batch of one."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        for name in ("a", "b"):
            await rig.bridge.show_task(rig.task(name, sla_seconds=86400))
        rig.clock.now = START + timedelta(seconds=10)
        await at_the_factory(rig, "a", decided=True)
        await rig.at(START + timedelta(seconds=31))
        await rig.drain_batching()
        b = await rig.store.get_task("b")
        assert b is not None and b.has_message and b.batch_id is None
        assert [s.kwargs.get("single") for s in rig.notifier.sent] == ["b"]
        assert not rig.batching.holds("b")
    finally:
        await rig.store.close()


async def test_a_batch_gets_one_reminder_warning_and_breach_alert_not_one_per_item(
    tmp_path: Path,
) -> None:
    """Three routine tasks of one batch message come due together: one @mention reminder, one
    "SLA breach imminent" and one "SLA breached" alert speak for the batch (what batching is
    for), and the other items' steps are recorded as covered."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        for name in ("a", "b", "c"):
            await rig.bridge.show_task(rig.task(name, sla_seconds=600))
        await rig.at(START + timedelta(seconds=31))  # the one batch message
        [batch] = rig.notifier.sent
        await rig.at(START + timedelta(seconds=130))  # reminder @mention
        await rig.at(START + timedelta(seconds=460))  # SLA warning
        await rig.at(START + timedelta(seconds=605))  # SLA breach
        posts = rig.messenger.posts
        mentions = [p for p in posts if "reminder:" in p["content"]]
        warnings = [p for p in posts if "breach imminent" in p["content"]]
        alerts = [p for p in posts if "SLA breached" in p["content"]]
        assert (len(mentions), len(warnings), len(alerts)) == (1, 1, 1)
        assert {p["reply_to"] for p in mentions + warnings} == {batch.id}
        assert "tasks of this batch" in mentions[0]["content"]
        assert f"/{batch.id}" in alerts[0]["content"]  # the link to the batch message
        audit = [(e.task_id, e.action, e.outcome) for e in await rig.store.audit_entries()]
        for task_id in ("a", "b", "c"):  # every item's step is accounted for
            sent = [o for t, a, o in audit if t == task_id and a == "escalation.reply"]
            assert sent and set(sent) <= {"sent", "skipped"}
    finally:
        await rig.store.close()


class SlowMessenger(FakeMessenger):
    """A messenger whose posts take time, as Discord's do (the ladder runs due tasks at once)."""

    async def post(self, channel_id: int, content: str, **kw: Any) -> int:
        # Discord's answer takes a while (a fake's latency, not a wait for a timer): the other
        # items' steps, whose store writes take real time too, run meanwhile
        await asyncio.sleep(0.02)
        return await super().post(channel_id, content, **kw)


async def test_items_due_together_get_one_post_even_while_discord_takes_its_time(
    tmp_path: Path,
) -> None:
    """The items of a batch are stepped concurrently: the second must wait for the first's
    post, not pass the check while it is in flight and post too."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    slow = SlowMessenger()
    rig.ladder.announcer.messenger = slow
    try:
        for name in ("a", "b", "c"):
            await rig.bridge.show_task(rig.task(name, sla_seconds=600))
        await rig.at(START + timedelta(seconds=31))
        await rig.at(START + timedelta(seconds=130))  # reminder @mention
        await rig.at(START + timedelta(seconds=460))  # warning
        await rig.at(START + timedelta(seconds=605))  # breach
        counts = [
            len([p for p in slow.posts if words in p["content"]])
            for words in ("reminder:", "breach imminent", "SLA breached")
        ]
        assert counts == [1, 1, 1]
    finally:
        await rig.store.close()


async def test_the_batch_reminder_mentions_every_items_assignee(tmp_path: Path) -> None:
    """A batch is of one kind, not of one person: an item assigned to someone the reminder
    did not mention gets its own mention (only of the people not mentioned yet)."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        await rig.bridge.show_task(rig.task("a", sla_seconds=600, assigneeId="u-alice"))
        await rig.bridge.show_task(rig.task("b", sla_seconds=600, assigneeId="u-dave"))
        await rig.at(START + timedelta(seconds=31))
        await rig.at(START + timedelta(seconds=130))  # reminder @mention
        mentions = [p for p in rig.messenger.posts if "reminder:" in p["content"]]
        assert {u for p in mentions for u in p["users"]} == {11, 12}
        assert len(mentions) <= 2
    finally:
        await rig.store.close()


async def test_an_item_that_breaches_after_the_batchs_alert_gets_its_own(tmp_path: Path) -> None:
    """The alert posted when item a breached speaks for the items breached then, not for b
    whose deadline came 90 s later (a was decided meanwhile: nobody would be told of b)."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        await rig.bridge.show_task(rig.task("a", sla_seconds=600))
        await rig.bridge.show_task(rig.task("b", sla_seconds=690))
        await rig.at(START + timedelta(seconds=31))
        await rig.at(START + timedelta(seconds=601))  # a breaches: its alert
        await at_the_factory(rig, "a", decided=True)
        await rig.at(START + timedelta(seconds=692))  # b breaches
        alerts = [p for p in rig.messenger.posts if "SLA breached" in p["content"]]
        assert len(alerts) == 2
    finally:
        await rig.store.close()


async def test_a_task_left_alone_stays_held_until_its_own_message_is_posted(
    tmp_path: Path,
) -> None:
    """Between the batch's post turning into a single post and that post, an event about the
    task must not run its ladder (no message to reply to yet)."""
    rig = await make_mix(str(tmp_path / "db.sqlite"))
    try:
        rig.clock.now = START + timedelta(seconds=200)  # back after downtime
        for name in ("a", "b"):
            await rig.bridge.show_task(rig.task(name, created=START, sla_seconds=3600))
        rig.clock.now = START + timedelta(seconds=210)
        await at_the_factory(rig, "a", decided=True)
        rig.clock.now = START + timedelta(seconds=231)
        await rig.batching._apply(lambda b, now: b.tick(now), wake=False)
        await rig.batching._carry_out(rig.batching._queue.get_nowait())  # the batch's post
        assert rig.batching.holds("b")  # its single post is queued
        await at_the_factory(rig, "b")
        for _ in range(3):
            await rig.ladder.tick()
            await rig.ladder.drain()
        assert rig.messenger.posts == [] and rig.messenger.dms == []
    finally:
        await rig.store.close()
