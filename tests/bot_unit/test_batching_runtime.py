"""The batching runtime in-process: bulk approval's failure paths, restarts, failed posts.

The end-to-end behaviour is in tests/e2e/test_batching_e2e.py; here a fake Discord notifier and
a fake factory make the failure paths reachable (partial bulk failures, the factory down, a
Discord post failing, a crash between posting and confirming).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from batching import Batcher, BatchingPolicy, EditBatch, PostBatch
from bot.bridge import Actor, Bridge
from bot.discord.batching_runtime import STATE_KEY, BatchingRuntime
from bot.factory.client import BulkResult, FactoryUnavailable
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Priority, Task
from tests.support.harness import wait_until

CHANNEL = 2
APPROVER = 10
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
ALICE = Actor(name="alice", via="button", discord_user_id=7, role_ids=frozenset({APPROVER}))
BOB = Actor(name="bob", via="button", discord_user_id=8)


@dataclass
class Sent:
    id: int
    kwargs: dict[str, Any]


@dataclass
class FakeNotifier:
    """Records sends and edits; ``fail_sends`` makes the next sends raise."""

    sent: list[Sent] = field(default_factory=list)
    edits: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    fail_sends: int = 0
    ids: Any = field(default_factory=lambda: itertools.count(1000))

    async def send(self, channel_id: int, content: str | None = None, **kwargs: Any) -> Sent:
        if self.fail_sends:
            self.fail_sends -= 1
            raise ConnectionError("Discord is down")
        message = Sent(next(self.ids), kwargs)
        self.sent.append(message)
        return message

    def channel(self, channel_id: int) -> Any:
        notifier = self

        class _Channel:
            def get_partial_message(self, message_id: int) -> Any:
                class _Message:
                    async def edit(self, **kwargs: Any) -> None:
                        notifier.edits.append((message_id, kwargs))

                return _Message()

        return _Channel()

    async def queue_edit(
        self, channel_id: int, message_id: int, payload: dict[str, Any], **_: Any
    ) -> bool:
        """The edit queue of the real notifier, sending at once."""
        await self.channel(channel_id).get_partial_message(message_id).edit(**payload)
        return True

    async def post_task(self, tracked: TrackedTask) -> tuple[int, int]:
        message = await self.send(CHANNEL, single=tracked.task_id)
        return CHANNEL, message.id

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        return None

    async def post_event(self, event: Any) -> None:
        return None


@dataclass
class FakeFactory:
    """``bulk`` answers ``result`` (or raises ``error``) and records its calls."""

    result: BulkResult | None = None
    error: Exception | None = None
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def bulk(self, **kwargs: Any) -> BulkResult:
        self.calls.append(kwargs)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def make_runtime(
    store: Store, factory: FakeFactory, notifier: FakeNotifier, *, wait: float = 0.05
) -> BatchingRuntime:
    settings = Settings(
        discord_bot_token="token",
        discord_guild_id=1,
        discord_tasks_channel_id=CHANNEL,
        discord_approver_role_ids=str(APPROVER),  # type: ignore[arg-type]
        factory_api_key="key",
        factory_webhook_secret="secret",
        batch_group_wait_seconds=wait,
    )
    bridge = Bridge(settings=settings, store=store, factory=factory, roster=Roster())  # type: ignore[arg-type]
    bridge.attach_notifier(notifier)
    runtime = BatchingRuntime(bridge, notifier)  # type: ignore[arg-type]
    bridge.batcher = runtime
    return runtime


async def add_tasks(store: Store, *names: str) -> list[TrackedTask]:
    out = []
    for name in names:
        task = Task.model_validate(
            {
                "id": f"t-{name}",
                "title": name,
                "type": "review",
                "stageName": "review",
                "priority": "low",
                "createdAt": NOW,
                "context": {
                    "testResults": {"total": 3, "passed": 3, "failed": 0, "coveragePercent": 95}
                },
            }
        )
        out.append(await store.upsert_task(task, NOW + timedelta(days=3)))
    return out


async def posted_batch(runtime: BatchingRuntime, store: Store, *names: str) -> str:
    """Offer the tasks and wait until their batch message is posted and attached."""
    tasks = await add_tasks(store, *names)
    for tracked in tasks:
        assert await runtime.offer(tracked)

    async def attached() -> bool:
        rows = await store.tasks_by_ids([t.task_id for t in tasks])
        return all(r.batch_id is not None for r in rows)

    await wait_until(attached, timeout=15, what="the batch message")
    row = await store.get_task(tasks[0].task_id)
    assert row is not None and row.batch_id is not None
    return row.batch_id


async def test_partial_bulk_failure_approves_the_rest_and_reports_per_item(store: Store) -> None:
    factory = FakeFactory(
        BulkResult(["t-a", "t-b"], [{"taskId": "t-c", "error": "VALIDATION: frozen"}])
    )
    notifier = FakeNotifier()
    runtime = make_runtime(store, factory, notifier)
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b", "c")
        outcome = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="i1")
    finally:
        await runtime.stop()
    assert outcome.kind == "done"
    assert "Approved 2 low-risk items" in outcome.message
    assert "**c** was not approved: VALIDATION: frozen" in outcome.message
    assert len(factory.calls) == 1 and factory.calls[0]["task_ids"] == ["t-a", "t-b", "t-c"]
    rows = {r.task_id: r for r in await store.tasks_by_ids(["t-a", "t-b", "t-c"])}
    assert rows["t-a"].decision == rows["t-b"].decision == "approved"
    assert rows["t-c"].decision is None and rows["t-c"].inflight_decision is None
    audit = [e for e in await store.audit_entries() if e.action == "task.approved"]
    assert {(e.task_id, e.outcome) for e in audit} == {
        ("t-a", "ok"),
        ("t-b", "ok"),
        ("t-c", "failed"),
    }
    assert {e.batch_id for e in audit} == {batch_id}
    last_edit = notifier.edits[-1][1]["embed"].description
    assert "✅ approved by <@7>" in last_edit and "approval failed: VALIDATION" in last_edit


async def test_factory_down_approves_nothing_and_keeps_buttons_live(store: Store) -> None:
    factory = FakeFactory(error=FactoryUnavailable("connect timeout"))
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        outcome = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="i1")
        items = await runtime.items(batch_id)
    finally:
        await runtime.stop()
    assert outcome.kind == "failed" and "NOTHING was approved" in outcome.message
    assert all(i.pending and i.approvable_low for i in items)
    audit = [e for e in await store.audit_entries() if e.action == "task.approved"]
    assert [e.outcome for e in audit] == ["failed", "failed"]


async def test_member_without_role_is_refused_and_factory_untouched(store: Store) -> None:
    factory = FakeFactory(BulkResult([], []))
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        outcome = await runtime.approve_low_risk(batch_id, BOB, idempotency_seed="i1")
    finally:
        await runtime.stop()
    assert outcome.kind == "refused"
    assert factory.calls == []
    audit = [e for e in await store.audit_entries() if e.action == "task.approved"]
    assert [e.outcome for e in audit] == ["refused", "refused"]


async def test_failed_post_is_retried_and_nothing_is_lost(store: Store) -> None:
    notifier = FakeNotifier(fail_sends=1)
    runtime = make_runtime(store, FakeFactory(), notifier)
    await runtime.start()
    try:
        await posted_batch(runtime, store, "a", "b")
    finally:
        await runtime.stop()
    assert len(notifier.sent) == 1
    failures = [e for e in await store.audit_entries() if e.action == "batch.PostBatch"]
    assert [e.outcome for e in failures] == ["failed"]


async def test_restart_confirms_a_stored_post_and_reposts_a_lost_one(store: Store) -> None:
    await add_tasks(store, "a", "b", "c", "d")
    batcher = Batcher(BatchingPolicy(group_wait_seconds=1))
    later = NOW + timedelta(seconds=1)
    batcher.add("t-a", "review:review", NOW)
    batcher.add("t-b", "review:review", NOW)
    batcher.add("t-c", "other:-", NOW)
    batcher.add("t-d", "other:-", NOW)
    first, second = batcher.tick(later)  # two PostBatch emitted, then a crash:
    assert isinstance(first, PostBatch) and isinstance(second, PostBatch)
    assert first.task_ids == ("t-a", "t-b")
    await store.save_state(STATE_KEY, batcher.snapshot())
    # the first message was posted and stored (not yet confirmed); the second never existed
    await store.save_batch(first.batch_id, first.key, first.task_ids)
    await store.set_batch_message(first.batch_id, CHANNEL, 555)
    notifier = FakeNotifier()
    runtime = make_runtime(store, FakeFactory(), notifier)
    await runtime.start()

    async def all_attached() -> bool:
        rows = await store.tasks_by_ids(["t-a", "t-b", "t-c", "t-d"])
        return all(r.has_message for r in rows)

    async def all_attached_and_confirmed() -> bool:
        # the confirmation is saved after the rows are attached: stopping in between would
        # leave it to the next start (by design), so wait for both before stopping
        state = await store.load_state(STATE_KEY)
        return (
            await all_attached()
            and state is not None
            and Batcher.from_snapshot(state).unconfirmed_posts() == []
        )

    try:
        await wait_until(
            all_attached_and_confirmed, timeout=5, what="every task on a confirmed message"
        )
    finally:
        await runtime.stop()
    rows = {r.task_id: r for r in await store.tasks_by_ids(["t-a", "t-b", "t-c", "t-d"])}
    assert rows["t-a"].message_id == rows["t-b"].message_id == 555  # confirmed, not re-posted
    assert len(notifier.sent) == 1  # only the lost one was posted again
    assert rows["t-c"].message_id == rows["t-d"].message_id == notifier.sent[0].id
    state = await store.load_state(STATE_KEY)
    assert state is not None and Batcher.from_snapshot(state).unconfirmed_posts() == []


async def test_tasks_with_a_message_are_never_batched(store: Store) -> None:
    runtime = make_runtime(store, FakeFactory(), FakeNotifier())
    (tracked,) = await add_tasks(store, "a")
    await store.set_message(tracked.task_id, CHANNEL, 99)
    fresh = await store.get_task(tracked.task_id)
    assert fresh is not None
    assert await runtime.offer(fresh) is False
    critical = Task(id="t-crit", title="Prod", priority="critical", created_at=NOW)  # type: ignore[arg-type]
    tracked_critical = await store.upsert_task(critical, NOW + timedelta(hours=1))
    assert await runtime.offer(tracked_critical) is False


async def test_a_retried_older_edit_never_drops_an_item_added_since(store: Store) -> None:
    notifier = FakeNotifier()
    runtime = make_runtime(store, FakeFactory(), notifier)
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        await add_tasks(store, "c", "d")
        await runtime._carry_out(EditBatch(batch_id, "review:review", ("t-a", "t-b", "t-c", "t-d")))
        # an edit that failed earlier is retried after the newer one
        await runtime._carry_out(EditBatch(batch_id, "review:review", ("t-a", "t-b", "t-c")))
        items = [i.task_id for i in await runtime.items(batch_id)]
    finally:
        await runtime.stop()
    assert items == ["t-a", "t-b", "t-c", "t-d"]  # shown, and in "Approve All"
    assert notifier.edits[-1][1]["embed"].title == "📋 4 tasks ready for review"


def clocked_runtime(store: Store, notifier: FakeNotifier) -> tuple[BatchingRuntime, list[datetime]]:
    """A runtime with a 60 s group wait on a clock the test moves (``now[0]``)."""
    now = [NOW]
    runtime = make_runtime(store, FakeFactory(), notifier, wait=60)
    runtime.bridge.clock = lambda: now[0]
    return runtime, now


async def end_group_wait(runtime: BatchingRuntime, now: list[datetime]) -> None:
    now[0] = NOW + timedelta(seconds=61)
    runtime._wake.set()  # the timer re-reads the (moved) clock


async def test_tasks_gone_during_the_group_wait_get_no_batch_message(store: Store) -> None:
    notifier = FakeNotifier()
    runtime, now = clocked_runtime(store, notifier)
    await runtime.start()
    try:
        for tracked in await add_tasks(store, "a", "b", "c"):
            assert await runtime.offer(tracked)
        for name in "abc":
            await runtime.bridge.task_gone(f"t-{name}", "the factory answers 404 for it")
        await end_group_wait(runtime, now)

        async def batcher_empty() -> bool:
            state = await store.load_state(STATE_KEY)
            return state is not None and not state["groups"] and not state["batches"]

        await wait_until(batcher_empty, timeout=5, what="the batcher done with the group")
    finally:
        await runtime.stop()
    assert notifier.sent == []  # no "📋 3 tasks ready for review" with 0 pending


async def test_a_task_gone_during_the_group_wait_is_left_off_the_batch(store: Store) -> None:
    notifier = FakeNotifier()
    runtime, now = clocked_runtime(store, notifier)
    await runtime.start()
    try:
        for tracked in await add_tasks(store, "a", "b", "c"):
            assert await runtime.offer(tracked)
        await runtime.bridge.task_gone("t-a", "the factory answers 404 for it")
        await end_group_wait(runtime, now)

        async def attached() -> bool:
            rows = await store.tasks_by_ids(["t-b", "t-c"])
            return all(r.batch_id is not None for r in rows)

        await wait_until(attached, timeout=15, what="the batch message")
        batch_id = (await store.get_task("t-b")).batch_id  # type: ignore[union-attr]
        assert batch_id is not None
        items = [i.task_id for i in await runtime.items(batch_id)]
    finally:
        await runtime.stop()
    assert items == ["t-b", "t-c"]
    assert notifier.sent[0].kwargs["embed"].title == "📋 2 tasks ready for review"


async def test_a_task_escalated_during_the_group_wait_is_posted_alone_at_once(
    store: Store,
) -> None:
    notifier = FakeNotifier()
    runtime, _ = clocked_runtime(store, notifier)  # the clock never reaches the deadline
    await runtime.start()
    try:
        a, b = await add_tasks(store, "a", "b")
        for tracked in (a, b):
            assert await runtime.offer(tracked)
        escalated = a.task.model_copy(update={"priority": Priority.CRITICAL})
        await runtime.bridge.apply_factory_task(escalated)  # a task.escalated event

        async def posted() -> bool:
            row = await store.get_task("t-a")
            return row is not None and row.has_message

        await wait_until(posted, timeout=5, what="the escalated task's own message")
        row_a, row_b = await store.tasks_by_ids(["t-a", "t-b"])
    finally:
        await runtime.stop()
    assert [s.kwargs for s in notifier.sent] == [{"single": "t-a"}]  # alone, not in a batch
    assert row_a.message_id == notifier.sent[0].id and row_a.batch_id is None
    assert not row_b.has_message  # b still waits for its group


async def test_restart_shows_an_item_whose_edit_was_saved_but_not_made(store: Store) -> None:
    await add_tasks(store, "a", "b", "c")
    batcher = Batcher(BatchingPolicy(group_wait_seconds=1, max_items=10_000))
    batcher.add("t-a", "review:review", NOW)
    batcher.add("t-b", "review:review", NOW)
    (post,) = batcher.tick(NOW + timedelta(seconds=1))
    assert isinstance(post, PostBatch)
    await store.save_batch(post.batch_id, post.key, post.task_ids)
    await store.set_batch_message(post.batch_id, CHANNEL, 555)
    for task_id in post.task_ids:
        await store.adopt_message(task_id, CHANNEL, 555, post.batch_id)
    batcher.posted(post.batch_id, f"{CHANNEL}/555", NOW + timedelta(seconds=1))
    (edit,) = batcher.add("t-c", "review:review", NOW + timedelta(seconds=10))
    assert isinstance(edit, EditBatch)
    await store.save_state(STATE_KEY, batcher.snapshot())  # saved, then a stop before the edit
    runtime = make_runtime(store, FakeFactory(), FakeNotifier())
    runtime.bridge.clock = lambda: NOW + timedelta(seconds=20)
    await runtime.start()

    async def shown() -> bool:
        row = await store.get_task("t-c")
        return row is not None and row.message_id == 555

    try:
        await wait_until(shown, timeout=15, what="t-c on the batch message")
        items = [i.task_id for i in await runtime.items(post.batch_id)]
    finally:
        await runtime.stop()
    assert items == ["t-a", "t-b", "t-c"]


async def test_stop_returns_when_a_wake_up_was_set_just_before_it(store: Store) -> None:
    """Python 3.11's ``asyncio.wait_for`` drops a cancellation arriving as the wait it guards
    completes: a task offered right before the stop left the timer running and ``stop()`` (the
    cog unload, the bridge's shutdown) waiting for it for ever."""
    import asyncio

    runtime = make_runtime(store, FakeFactory(), FakeNotifier(), wait=30)
    await runtime.start()
    a, b = await add_tasks(store, "a", "b")
    await runtime.offer(a)  # a group waits 30 s: the timer waits in wait_for(…, 30)
    await wait_until(
        lambda: runtime._batcher.next_wakeup() is not None and not runtime._wake.is_set(),
        what="the timer waiting for the group",
    )
    loops = list(runtime._tasks)
    await runtime.offer(b)  # sets the wake-up …
    stopping = asyncio.create_task(runtime.stop())  # … and the runtime is stopped right then
    done, _ = await asyncio.wait({stopping}, timeout=5)
    assert done, "stop() did not return"
    assert all(task.done() for task in loops)
