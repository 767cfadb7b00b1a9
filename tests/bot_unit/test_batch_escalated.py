"""A task escalated to critical after it joined a batch is no longer routine (master plan §7:
critical and high tasks are never bundled): "Approve All Low-Risk" leaves it out and the batch
says it needs its own decision. Runs the batching runtime of ``test_batching_runtime``."""

from __future__ import annotations

from datetime import timedelta

from bot.discord.batch_embeds import item_line
from bot.factory.client import BulkResult
from bot.store import Store
from escalation.models import Priority
from tests.bot_unit.test_batching_runtime import (
    ALICE,
    NOW,
    FakeFactory,
    FakeNotifier,
    make_runtime,
    posted_batch,
)


async def test_an_item_escalated_to_critical_is_left_out_of_the_bulk_approval(
    store: Store,
) -> None:
    factory = FakeFactory(BulkResult(["t-b"], []))
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        tracked = await store.get_task("t-a")
        assert tracked is not None
        escalated = tracked.task.model_copy(update={"priority": Priority.CRITICAL})
        await store.upsert_task(escalated, NOW + timedelta(minutes=30))  # task.escalated
        items = {i.task_id: i for i in await runtime.items(batch_id)}
        outcome = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-1")
    finally:
        await runtime.stop()
    assert [call["task_ids"] for call in factory.calls] == [["t-b"]]
    assert outcome.kind == "done"
    assert not items["t-a"].approvable_low and items["t-b"].approvable_low
    assert "🔺 now critical priority: needs its own decision" in item_line(items["t-a"])


async def test_an_item_that_became_a_production_deploy_is_never_approved_in_bulk(
    store: Store,
) -> None:
    """An ``approval.pending`` naming a deploy lands between the click and the bulk request:
    the item is judged as stored now, not as seen at the click."""
    from escalation.models import Approval

    factory = FakeFactory(BulkResult(["t-b"], []))
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        await posted_batch(runtime, store, "a", "b")
        seen = [t for t in [await store.get_task("t-a"), await store.get_task("t-b")] if t]
        deploy = Approval(id="ap", task_id="t-a", type="deploy", required_approvers=1)
        await store.set_approval("t-a", deploy)  # the event, after the click read the items
        result = await runtime.bridge.approve_bulk(seen, ALICE, idempotency_seed="click-2")
    finally:
        await runtime.stop()
    assert [call["task_ids"] for call in factory.calls] == [["t-b"]]
    assert [t.task_id for t in result.approved] == ["t-b"]
    still = await store.get_task("t-a")
    assert still is not None and still.decision is None


async def test_a_deploy_that_lands_while_the_items_are_claimed_is_not_approved_in_bulk(
    store: Store,
) -> None:
    """The items are read, then claimed one by one: an ``approval.pending`` (deploy) landing
    between the read and the claim of an item must still keep it out, and its claim is given
    back (the single decision checks its claimed row the same way)."""
    from escalation.models import Approval

    factory = FakeFactory(BulkResult(["t-b"], []))
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        claim = store.begin_decision
        landed: list[str] = []

        async def event_lands_first(task_id: str, *args: object, **kwargs: object) -> object:
            if not landed:  # the deploy's approval.pending, just before the first claim
                landed.append(task_id)
                deploy = Approval(id="ap", task_id="t-a", type="deploy", required_approvers=1)
                await store.set_approval("t-a", deploy)
            return await claim(task_id, *args, **kwargs)  # type: ignore[arg-type]

        store.begin_decision = event_lands_first  # type: ignore[method-assign]
        outcome = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-3")
    finally:
        await runtime.stop()
    assert [call["task_ids"] for call in factory.calls] == [["t-b"]]
    assert outcome.kind == "done"
    still = await store.get_task("t-a")
    assert still is not None and still.decision is None and still.inflight_decision is None


async def _message_of(store: Store, task_id: str) -> int | None:
    row = await store.get_task(task_id)
    return None if row is None else row.message_id


async def test_a_task_that_became_a_deploy_while_waiting_leaves_its_group(store: Store) -> None:
    """It is posted alone at once; the batch must not keep it as an item it never shows,
    else the batch, its visible items all approved, stays open and takes in the next task of
    its kind silently (an edit notifies nobody) instead of a new message."""
    from escalation.models import Approval
    from tests.bot_unit.test_batching_runtime import add_tasks
    from tests.support.harness import wait_until

    notifier = FakeNotifier()
    runtime = make_runtime(store, FakeFactory(BulkResult(["t-a", "t-b"], [])), notifier, wait=0.3)
    bridge = runtime.bridge
    await runtime.start()
    try:
        tasks = await add_tasks(store, "a", "b", "t")
        for tracked in tasks:
            await bridge.show_task(tracked.task)  # all three wait for their group
        deploy = Approval(id="ap", task_id="t-t", type="deploy", required_approvers=1)
        await store.set_approval("t-t", deploy)  # approval.pending during the group wait
        await bridge.show_task(tasks[2].task)

        async def all_shown() -> bool:
            return all(r.has_message for r in await store.tasks_by_ids(["t-a", "t-b", "t-t"]))

        await wait_until(all_shown, timeout=5, what="every task on a message")
        row = await store.get_task("t-a")
        assert row is not None and row.batch_id is not None
        record = await store.get_batch(row.batch_id)
        assert record is not None and record.task_ids == ("t-a", "t-b")
        await runtime.approve_low_risk(row.batch_id, ALICE, idempotency_seed="click-4")
        (later,) = await add_tasks(store, "d")
        await bridge.show_task(later.task)

        async def later_shown() -> bool:
            return await _message_of(store, "t-d") is not None

        await wait_until(later_shown, timeout=5, what="the later task's message")
        assert await _message_of(store, "t-d") != row.message_id  # a new message
    finally:
        await runtime.stop()


async def test_an_addition_decided_before_the_edit_is_forgotten_by_the_batch(
    store: Store,
) -> None:
    """A task that joined an open batch message and was decided (the dashboard) before the
    coalesced edit showed it: left off the message, and the batch must not count it as an
    undecided item (it would stay open for ever, taking in later tasks silently)."""
    from escalation.models import TaskDecision, TaskStatus
    from tests.bot_unit.test_batching_runtime import add_tasks
    from tests.support.harness import wait_until

    notifier = FakeNotifier()
    runtime = make_runtime(store, FakeFactory(BulkResult(["t-a", "t-b"], [])), notifier, wait=0.2)
    bridge = runtime.bridge
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        (joined,) = await add_tasks(store, "c")
        await bridge.show_task(joined.task)  # an addition to the open message
        decided = joined.task.model_copy(
            update={
                "status": TaskStatus.COMPLETED,
                "decision": TaskDecision.APPROVED,
                "decided_by": "dash",
                "decided_at": NOW,
            }
        )
        await bridge.apply_factory_task(decided)  # decided on the dashboard first

        def edit_done() -> bool:
            return not any("t-c" in b["added"] for b in runtime._batcher.snapshot()["batches"])

        await wait_until(edit_done, timeout=5, what="the coalesced edit")
        await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-5")
        batch_message = await _message_of(store, "t-a")
        (later,) = await add_tasks(store, "d")
        await bridge.show_task(later.task)

        async def later_shown() -> bool:
            return await _message_of(store, "t-d") is not None

        await wait_until(later_shown, timeout=5, what="the later task's message")
        assert await _message_of(store, "t-d") != batch_message
    finally:
        await runtime.stop()


async def test_a_bulk_approval_the_database_refuses_midway_leaves_no_item_in_flight(
    store: Store,
) -> None:
    """The database takes the first item's in-flight mark, then fails (a restart, the disk):
    the person is told nothing was sent, so no mark may stay behind to hold off the next
    click and be sent at the next start."""
    factory = FakeFactory(BulkResult(["t-a", "t-b"], []))
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        claim = store.begin_decision
        marked: list[str] = []

        async def fails_on_the_second(task_id: str, *args: object, **kwargs: object) -> object:
            if marked:
                raise OSError("disk I/O error")
            marked.append(task_id)
            return await claim(task_id, *args, **kwargs)  # type: ignore[arg-type]

        store.begin_decision = fails_on_the_second  # type: ignore[method-assign]
        outcome = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-4")
        store.begin_decision = claim  # type: ignore[method-assign]
        assert outcome.kind == "failed" and "nothing was sent" in outcome.message
        assert factory.calls == []
        for task_id in ("t-a", "t-b"):
            row = await store.get_task(task_id)
            assert row is not None and row.inflight_decision is None and row.decision is None
        again = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-5")
    finally:
        await runtime.stop()
    assert again.kind == "done"
    assert [call["task_ids"] for call in factory.calls] == [["t-a", "t-b"]]
