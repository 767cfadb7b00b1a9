"""Approve All Low-Risk when the factory's answer is lost: a timeout is not a "no" (contract
§7.1). The factory may have approved every item, so each is read back before anything is said:
approved, NOT recorded, decided by someone else, or — not readable — still in flight and
re-sent in the background. Runs the batching runtime of ``test_batching_runtime`` (fake
Discord, fake factory) on each engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.factory.client import FactoryUnavailable
from bot.store import Store
from escalation.models import Task
from tests.bot_unit.test_batching_runtime import (
    ALICE,
    NOW,
    FakeFactory,
    FakeNotifier,
    make_runtime,
    posted_batch,
)

LOST = FactoryUnavailable("POST tasks/bulk failed after 3 retries (ReadTimeout)", uncertain=True)


@dataclass
class ReadBackFactory(FakeFactory):
    """``bulk`` raises :data:`LOST`; ``get_task`` answers ``records[task_id]`` (a task record,
    or an exception to raise); ``complete_task`` (a background re-send) answers 503s."""

    records: dict[str, dict[str, Any] | Exception] = field(default_factory=dict)
    completes: list[str] = field(default_factory=list)

    async def get_task(self, task_id: str) -> Task:
        record = self.records[task_id]
        if isinstance(record, Exception):
            raise record
        return Task.model_validate(record)

    async def complete_task(self, task_id: str, **_: Any) -> Task:
        self.completes.append(task_id)
        raise FactoryUnavailable("HTTP 503")


def record(name: str, **decided: Any) -> dict[str, Any]:
    base = {
        "id": f"t-{name}",
        "title": name,
        "type": "review",
        "priority": "low",
        "createdAt": NOW.isoformat(),
    }
    if decided:
        base |= {"status": "completed", "decidedAt": NOW.isoformat(), **decided}
    return base


ALICES = {"decision": "approved", "decidedBy": "alice", "decisionData": {"discordUserId": "7"}}
CAROLS = {"decision": "rejected", "decidedBy": "carol", "decisionData": {"discordUserId": "9"}}


async def approve_all(store: Store, factory: ReadBackFactory) -> tuple[Any, dict[str, Any]]:
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b", "c", "d")
        outcome = await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-1")
        tasks = {name: await store.get_task(f"t-{name}") for name in "abcd"}
    finally:
        await runtime.stop()
    return outcome, tasks


async def test_a_lost_bulk_answer_is_read_back_item_by_item(store: Store) -> None:
    factory = ReadBackFactory(
        error=LOST,
        records={
            "t-a": record("a", **ALICES),  # the factory did approve it
            "t-b": record("b"),  # still open: not recorded
            "t-c": record("c", **CAROLS),  # Carol rejected it on the dashboard meanwhile
            "t-d": FactoryUnavailable("connect timeout"),  # cannot be read now
        },
    )
    outcome, tasks = await approve_all(store, factory)
    assert outcome.kind == "done"
    assert "NOTHING" not in outcome.message
    lines = outcome.message.split("\n")
    assert lines[0] == "✅ Approved 1 low-risk item: **a**."
    assert "**b** was not approved: NOT recorded by the factory" in outcome.message
    assert "**c** was not approved: already rejected by carol" in outcome.message
    assert "did not confirm these yet" in lines[-1] and "**d**" in lines[-1]
    a, b, c, d = (tasks[n] for n in "abcd")
    assert a is not None and a.decision == "approved" and a.inflight_key is None
    assert b is not None and b.decision is None and b.inflight_key is None  # buttons live
    assert c is not None and c.decision == "rejected" and c.inflight_key is None
    assert d is not None and d.decision is None and d.inflight_key is not None  # re-sent
    audit = {
        e.task_id: e.outcome for e in await store.audit_entries() if e.action == "task.approved"
    }
    assert audit == {"t-a": "ok", "t-b": "failed", "t-c": "conflict", "t-d": "unknown"}


async def test_nothing_readable_leaves_every_item_in_flight_and_says_so(store: Store) -> None:
    unreadable = FactoryUnavailable("connect timeout")
    factory = ReadBackFactory(
        error=LOST, records=dict.fromkeys(("t-a", "t-b", "t-c", "t-d"), unreadable)
    )
    outcome, tasks = await approve_all(store, factory)
    assert outcome.kind == "unconfirmed"
    assert "NOTHING" not in outcome.message
    assert all(t is not None and t.inflight_key is not None for t in tasks.values())


async def test_a_factory_that_cannot_be_reached_still_approves_nothing(store: Store) -> None:
    """Nothing was sent (a connection refused is certain): the old answer stands."""
    factory = ReadBackFactory(error=FactoryUnavailable("ConnectError", uncertain=False))
    outcome, tasks = await approve_all(store, factory)
    assert outcome.kind == "failed" and "NOTHING was approved" in outcome.message
    assert all(t is not None and t.inflight_key is None for t in tasks.values())
    assert factory.completes == []  # nothing to re-send


class RefusesTheResend(ReadBackFactory):
    """The re-send of a decision left in flight is refused (422): it is NOT recorded."""

    async def complete_task(self, task_id: str, **_: Any) -> Any:
        from bot.factory.errors import FactoryError

        raise FactoryError(422, "VALIDATION_ERROR", "cannot approve this task")


async def test_an_item_whose_re_send_was_refused_no_longer_says_not_confirmed_yet(
    store: Store,
) -> None:
    """An item left in flight by an unclear bulk answer shows "⏳ approval not confirmed yet";
    once its background re-send ends NOT recorded it is pending again (and counted by the
    button), so the line must not keep saying it is being confirmed."""
    from bot.discord.batch_views import render_batch

    factory = RefusesTheResend(error=LOST, records={"t-a": record("a"), "t-b": LOST})
    runtime = make_runtime(store, factory, FakeNotifier())
    await runtime.start()
    try:
        batch_id = await posted_batch(runtime, store, "a", "b")
        factory.records["t-a"] = record(
            "a", decision="approved", decidedBy="alice", decisionData={"discordUserId": "7"}
        )
        factory.records["t-b"] = FactoryUnavailable("connect timeout")  # b: read back fails
        await runtime.approve_low_risk(batch_id, ALICE, idempotency_seed="click-1")
        b = await store.get_task("t-b")
        assert b is not None and b.inflight_key is not None  # in flight: re-sent later
        shown = render_batch(batch_id, await runtime.items(batch_id))["embed"].description
        assert "⏳ approval not confirmed yet" in shown
        resent = await runtime.bridge.resume_decision(b, notify=False, why="re-sent")
        assert resent.kind == "failed"
        b = await store.get_task("t-b")
        assert b is not None and b.inflight_key is None and b.decision is None  # pending again
        items = await runtime.items(batch_id)
        shown = render_batch(batch_id, items)["embed"].description
        assert "not confirmed yet" not in shown
        assert [i.tracked.task_id for i in items if i.approvable_low] == ["t-b"]
    finally:
        await runtime.stop()
