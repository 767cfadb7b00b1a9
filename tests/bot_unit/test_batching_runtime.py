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

from batching import Batcher, BatchingPolicy, PostBatch
from bot.bridge import Actor, Bridge
from bot.discord.batching_runtime import STATE_KEY, BatchingRuntime
from bot.factory.client import BulkResult, FactoryUnavailable
from bot.roster import Roster
from bot.settings import Settings
from bot.store import Store, TrackedTask
from escalation.models import Task
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

    async def edit_task(self, tracked: TrackedTask) -> None:
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

    await wait_until(attached, timeout=5, what="the batch message")
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
