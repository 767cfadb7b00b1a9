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
