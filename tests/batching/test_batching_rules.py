"""Grouping rules of ``batching`` with an injected clock (no real time)."""

from __future__ import annotations

import heapq
import json
import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from batching import (
    Action,
    Batcher,
    BatchingPolicy,
    EditBatch,
    PostBatch,
    PostSingle,
    batch_key,
)
from escalation.deploy_guard import is_guarded
from escalation.models import PipelineStage, Priority, Task, TaskContext, TaskType

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
KEY = "review:review"
OTHER = "approval:staging"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_task(**overrides: Any) -> Task:
    values: dict[str, Any] = {
        "id": "t1",
        "title": "freshdesk",
        "created_at": T0,
        "type": TaskType.REVIEW,
        "stage_name": PipelineStage.REVIEW,
        "priority": Priority.MEDIUM,
    }
    values.update(overrides)
    return Task(**values)


def posted_batch(batcher: Batcher, ids: list[str], *, post_at: float = 31.0) -> PostBatch:
    """Add ``ids`` at t=0, end the group wait at t=30, confirm the post at ``post_at``."""
    for task_id in ids:
        assert batcher.add(task_id, KEY, at(0)) == []
    (action,) = batcher.tick(at(30))
    assert isinstance(action, PostBatch)
    assert batcher.posted(action.batch_id, "msg-1", at(post_at)) == []
    return action


# ---------------------------------------------------------------------------------- batch_key


def test_routine_tasks_get_type_and_stage_key() -> None:
    assert batch_key(make_task()) == "review:review"
    assert batch_key(make_task(priority=Priority.LOW)) == "review:review"
    assert batch_key(make_task(type=TaskType.APPROVAL, stage_name=None)) == "approval:-"


@pytest.mark.parametrize("priority", [Priority.CRITICAL, Priority.HIGH])
def test_critical_and_high_bypass_batching(priority: Priority) -> None:
    assert batch_key(make_task(priority=priority)) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"stage_name": PipelineStage.PRODUCTION},
        {"context": TaskContext(modal_config={"target": "production"})},
        {"context": TaskContext(metrics={"deploysToProduction": 1})},
    ],
)
def test_production_deploys_bypass_batching(overrides: dict[str, Any]) -> None:
    task = make_task(priority=Priority.LOW, **overrides)
    assert is_guarded(task)
    assert batch_key(task) is None


# ---------------------------------------------------------------------------------- policy


@pytest.mark.parametrize(
    "kwargs",
    [
        {"group_wait_seconds": -1},
        {"group_interval_seconds": math.inf},
        {"edit_coalesce_seconds": math.nan},
        {"group_wait_seconds": True},
        {"max_items": 1},
        {"max_items": 2.5},
        {"max_items": True},
    ],
)
def test_policy_rejects_invalid_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BatchingPolicy(**kwargs)


def test_policy_defaults() -> None:
    policy = BatchingPolicy()
    assert (policy.group_wait_seconds, policy.group_interval_seconds, policy.max_items) == (
        30.0,
        300.0,
        20,
    )
    assert policy.edit_coalesce == timedelta(seconds=2)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        Batcher().add("a", KEY, datetime(2025, 1, 1))


# ---------------------------------------------------------------------------------- group wait


def test_group_waits_then_posts_one_batch() -> None:
    batcher = Batcher()
    assert batcher.add("a", KEY, at(0)) == []
    assert batcher.next_wakeup() == at(30)
    assert batcher.add("b", KEY, at(10)) == []
    assert batcher.add("c", KEY, at(29.9)) == []
    assert batcher.next_wakeup() == at(30), "later tasks do not extend the wait"
    assert batcher.tick(at(29.999)) == []
    (action,) = batcher.tick(at(30))
    assert isinstance(action, PostBatch)
    assert (action.key, action.task_ids) == (KEY, ("a", "b", "c"))
    assert batcher.tick(at(31)) == []
    assert batcher.next_wakeup() is None


def test_lone_task_gets_single_message() -> None:
    batcher = Batcher()
    assert batcher.add("a", KEY, at(0)) == []
    assert batcher.tick(at(30)) == [PostSingle("a")]
    assert batcher.next_wakeup() is None
    assert batcher.snapshot()["groups"] == []
    assert batcher.snapshot()["batches"] == []


def test_late_call_flushes_due_group_before_taking_new_task() -> None:
    batcher = Batcher()
    batcher.add("a", KEY, at(0))
    batcher.add("b", KEY, at(1))
    (post,) = batcher.add("c", KEY, at(45))  # nobody ticked at t=30
    assert isinstance(post, PostBatch)
    assert post.task_ids == ("a", "b")
    # c joined the just-emitted batch (post not confirmed yet) instead of waiting alone.
    assert batcher.posted(post.batch_id, "m", at(46)) == []
    assert batcher.tick(at(48)) == [EditBatch(post.batch_id, KEY, ("a", "b", "c"), "m")]


def test_zero_group_wait_posts_on_next_tick() -> None:
    batcher = Batcher(BatchingPolicy(group_wait_seconds=0))
    assert batcher.add("a", KEY, at(5)) == []
    assert batcher.next_wakeup() == at(5)
    assert batcher.tick(at(5)) == [PostSingle("a")]


def test_duplicate_add_is_ignored() -> None:
    batcher = Batcher()
    batcher.add("a", KEY, at(0))
    assert batcher.add("a", KEY, at(1)) == []
    assert batcher.tick(at(30)) == [PostSingle("a")]


def test_different_keys_are_never_mixed() -> None:
    batcher = Batcher()
    for task_id, key in [("a1", KEY), ("b1", OTHER), ("a2", KEY), ("b2", OTHER), ("c1", "x:-")]:
        batcher.add(task_id, key, at(1))
    actions = batcher.tick(at(31))
    assert {(type(a).__name__, getattr(a, "key", None)) for a in actions} == {
        ("PostBatch", KEY),
        ("PostBatch", OTHER),
        ("PostSingle", None),
    }
    by_key = {a.key: a.task_ids for a in actions if isinstance(a, PostBatch)}
    assert by_key == {KEY: ("a1", "a2"), OTHER: ("b1", "b2")}
    assert PostSingle("c1") in actions


# ---------------------------------------------------------------------------------- interval


def test_task_within_interval_is_added_by_edit() -> None:
    batcher = Batcher()
    post = posted_batch(batcher, ["a", "b"], post_at=31)
    assert batcher.add("c", KEY, at(131)) == [
        EditBatch(post.batch_id, KEY, ("a", "b", "c"), "msg-1")
    ]


def test_task_after_interval_opens_new_group() -> None:
    batcher = Batcher()
    posted_batch(batcher, ["a", "b"], post_at=31)
    assert batcher.add("d", KEY, at(431)) == []
    assert batcher.next_wakeup() == at(461)
    assert batcher.tick(at(461)) == [PostSingle("d")]


def test_interval_counts_from_post_confirmation_and_ends_exactly() -> None:
    batcher = Batcher()
    post = posted_batch(batcher, ["a", "b"], post_at=40)
    assert batcher.add("c", KEY, at(339.9)) == [
        EditBatch(post.batch_id, KEY, ("a", "b", "c"), "msg-1")
    ]
    assert batcher.add("d", KEY, at(340)) == []  # post + 300 s: window closed
    assert batcher.next_wakeup() == at(370)


def test_additions_within_coalesce_window_become_one_edit() -> None:
    batcher = Batcher()
    post = posted_batch(batcher, ["a", "b"], post_at=31)
    assert batcher.add("c", KEY, at(31.5)) == []  # 0.5 s after the post: wait for company
    assert batcher.add("d", KEY, at(32.0)) == []
    assert batcher.next_wakeup() == at(33)
    assert batcher.tick(at(32.9)) == []
    assert batcher.tick(at(33)) == [EditBatch(post.batch_id, KEY, ("a", "b", "c", "d"), "msg-1")]
    # Next addition 2 s after that edit goes out at once.
    assert batcher.add("e", KEY, at(35)) == [
        EditBatch(post.batch_id, KEY, ("a", "b", "c", "d", "e"), "msg-1")
    ]
    assert batcher.next_wakeup() is None


def test_additions_before_post_confirmation_wait_for_it() -> None:
    batcher = Batcher()
    batcher.add("a", KEY, at(0))
    batcher.add("b", KEY, at(0))
    (post,) = batcher.tick(at(30))
    assert isinstance(post, PostBatch)
    assert batcher.add("c", KEY, at(30.5)) == []
    assert batcher.next_wakeup() is None, "no edit before the message exists"
    assert batcher.unconfirmed_posts() == [post]
    assert batcher.posted(post.batch_id, "m", at(31)) == []
    assert batcher.unconfirmed_posts() == []
    assert batcher.tick(at(33)) == [EditBatch(post.batch_id, KEY, ("a", "b", "c"), "m")]


def test_zero_coalesce_edits_on_every_addition() -> None:
    batcher = Batcher(BatchingPolicy(edit_coalesce_seconds=0))
    batcher.add("a", KEY, at(0))
    batcher.add("b", KEY, at(0))
    (post,) = batcher.tick(at(30))
    assert batcher.add("c", KEY, at(30.5)) == []
    assert isinstance(post, PostBatch)
    assert batcher.posted(post.batch_id, "m", at(31)) == [
        EditBatch(post.batch_id, KEY, ("a", "b", "c"), "m")
    ]
    assert batcher.add("d", KEY, at(31)) == [
        EditBatch(post.batch_id, KEY, ("a", "b", "c", "d"), "m")
    ]


# ---------------------------------------------------------------------------------- capacity


def test_full_group_posts_at_once_and_21st_starts_new_group() -> None:
    batcher = Batcher()
    for i in range(19):
        assert batcher.add(f"t{i}", KEY, at(i * 0.1)) == []
    (full,) = batcher.add("t19", KEY, at(2))
    assert isinstance(full, PostBatch)
    assert full.task_ids == tuple(f"t{i}" for i in range(20))
    assert batcher.add("t20", KEY, at(2.5)) == []
    assert batcher.next_wakeup() == at(32.5), "the 21st waits its own group_wait"
    batcher.posted(full.batch_id, "m", at(3))
    assert batcher.tick(at(32.5)) == [PostSingle("t20")]


def test_open_batch_fills_up_by_edits_then_new_group() -> None:
    batcher = Batcher()
    post = posted_batch(batcher, [f"t{i}" for i in range(5)], post_at=31)
    edits: list[Action] = []
    for i in range(5, 20):
        edits += batcher.add(f"t{i}", KEY, at(40 + i * 3))  # 3 s apart: one edit each
    assert len(edits) == 15
    assert edits[-1] == EditBatch(post.batch_id, KEY, tuple(f"t{i}" for i in range(20)), "msg-1")
    assert batcher.add("t20", KEY, at(120)) == []  # full: new group
    assert batcher.tick(at(150)) == [PostSingle("t20")]


def test_max_items_is_configurable() -> None:
    batcher = Batcher(BatchingPolicy(max_items=3))
    batcher.add("a", KEY, at(0))
    batcher.add("b", KEY, at(0))
    assert batcher.add("c", KEY, at(0)) == [PostBatch("b1-a", KEY, ("a", "b", "c"))]


# ---------------------------------------------------------------------------------- decisions


def test_all_items_decided_closes_batch() -> None:
    batcher = Batcher()
    posted_batch(batcher, ["a", "b"], post_at=31)
    assert batcher.mark_decided("a", at(40)) == []
    assert batcher.mark_decided("b", at(41)) == []
    assert batcher.add("c", KEY, at(60)) == []  # not an edit of the closed message
    assert batcher.next_wakeup() == at(90)
    assert batcher.tick(at(90)) == [PostSingle("c")]


def test_partly_decided_batch_still_takes_additions() -> None:
    batcher = Batcher()
    post = posted_batch(batcher, ["a", "b"], post_at=31)
    batcher.mark_decided("a", at(40))
    assert batcher.add("c", KEY, at(60)) == [
        EditBatch(post.batch_id, KEY, ("a", "b", "c"), "msg-1")
    ]


def test_decided_task_leaves_pending_group() -> None:
    batcher = Batcher()
    for task_id in "abc":
        batcher.add(task_id, KEY, at(0))
    batcher.mark_decided("b", at(5))
    (post,) = batcher.tick(at(30))
    assert isinstance(post, PostBatch)
    assert post.task_ids == ("a", "c")


def test_group_reduced_to_one_posts_single_and_empty_group_vanishes() -> None:
    batcher = Batcher()
    batcher.add("a", KEY, at(0))
    batcher.add("b", KEY, at(0))
    batcher.mark_decided("a", at(1))
    assert batcher.tick(at(30)) == [PostSingle("b")]
    batcher.add("c", KEY, at(40))
    batcher.mark_decided("c", at(41))
    assert batcher.next_wakeup() is None
    assert batcher.tick(at(100)) == []


def test_decided_addition_is_never_shown() -> None:
    batcher = Batcher()
    posted_batch(batcher, ["a", "b"], post_at=31)
    assert batcher.add("c", KEY, at(31.5)) == []
    batcher.mark_decided("c", at(32))
    assert batcher.next_wakeup() is None
    assert batcher.tick(at(40)) == []


def test_task_that_must_be_posted_alone_leaves_its_group_at_once() -> None:
    batcher = Batcher()
    for task_id in "abc":
        batcher.add(task_id, KEY, at(0))
    assert batcher.remove("a", at(5)) == [PostSingle("a")]  # escalated: alone, at once
    (post,) = batcher.tick(at(30))
    assert isinstance(post, PostBatch) and post.task_ids == ("b", "c")
    assert batcher.remove("b", at(31)) == []  # already on its message: left as it is


def test_removed_addition_is_posted_alone_and_never_shown() -> None:
    batcher = Batcher()
    posted_batch(batcher, ["a", "b"], post_at=31)
    assert batcher.add("c", KEY, at(31.5)) == []
    assert batcher.remove("c", at(32)) == [PostSingle("c")]
    assert batcher.next_wakeup() is None
    assert batcher.tick(at(40)) == []


def test_unknown_decision_is_ignored() -> None:
    assert Batcher().mark_decided("nope", at(0)) == []


# ---------------------------------------------------------------------------------- restarts


def test_snapshot_round_trip_continues_identically() -> None:
    policy = BatchingPolicy()
    original = Batcher(policy)
    post = posted_batch(original, ["a", "b"], post_at=31)
    original.mark_decided("a", at(35))
    original.add("c", KEY, at(36))  # edit goes out at once (5 s after the post)
    original.add("d", KEY, at(37))  # waits for coalescing until t=38
    original.add("x", OTHER, at(37))  # pending group of another key
    data = json.loads(json.dumps(original.snapshot()))
    restored = Batcher.from_snapshot(data, policy)
    assert restored.snapshot() == original.snapshot()
    assert restored.next_wakeup() == original.next_wakeup() == at(38)
    for batcher in (original, restored):
        assert batcher.tick(at(38)) == [
            EditBatch(post.batch_id, KEY, ("a", "b", "c", "d"), "msg-1")
        ]
        assert batcher.add("e", KEY, at(39)) == []  # 1 s after the last edit: due at t=40
        assert batcher.tick(at(40)) == [
            EditBatch(post.batch_id, KEY, ("a", "b", "c", "d", "e"), "msg-1")
        ]
        assert batcher.tick(at(67)) == [PostSingle("x")]
        assert batcher.next_wakeup() is None


def test_unconfirmed_post_survives_restart() -> None:
    batcher = Batcher()
    batcher.add("a", KEY, at(0))
    batcher.add("b", KEY, at(0))
    (post,) = batcher.tick(at(30))
    restored = Batcher.from_snapshot(json.loads(json.dumps(batcher.snapshot())))
    assert restored.unconfirmed_posts() == [post]


def test_bad_snapshot_is_rejected() -> None:
    with pytest.raises(ValueError, match="version"):
        Batcher.from_snapshot({"version": 99})
    with pytest.raises(ValueError, match="malformed"):
        Batcher.from_snapshot({"version": 1, "seq": 0})


def test_batch_ids_are_unique_even_after_lost_snapshot() -> None:
    first, second = Batcher(), Batcher()
    first.add("a", KEY, at(0))
    first.add("b", KEY, at(0))
    second.add("c", KEY, at(0))
    second.add("d", KEY, at(0))
    (p1,) = first.tick(at(30))
    (p2,) = second.tick(at(30))
    assert isinstance(p1, PostBatch)
    assert isinstance(p2, PostBatch)
    assert p1.batch_id != p2.batch_id


# ---------------------------------------------------------------------------------- bursts


class Simulation:
    """A fake adapter: feeds arrivals, ticks at ``next_wakeup``, confirms posts after pacing.

    Posts are confirmed no faster than 5 per 5.05 s (the channel pacer), so additions can pile up
    on unconfirmed batches as they would in production.
    """

    def __init__(self, batcher: Batcher, *, max_posts: int = 5, per_seconds: float = 5.05) -> None:
        self.batcher = batcher
        self.max_posts = max_posts
        self.per_seconds = per_seconds
        self.sent: list[float] = []
        self.messages: dict[str, tuple[str, ...]] = {}  # batch id / single id -> items
        self.keys: dict[str, str] = {}
        self.new_messages = 0
        self.edits = 0
        self.events: list[tuple[float, int, str, tuple[str, ...]]] = []
        self._order = 0

    def _schedule(self, when: float, kind: str, *payload: str) -> None:
        self._order += 1
        heapq.heappush(self.events, (when, self._order, kind, payload))

    def arrive(self, when: float, task_id: str, key: str = KEY) -> None:
        self._schedule(when, "arrive", task_id, key)

    def decide(self, when: float, task_id: str) -> None:
        self._schedule(when, "decide", task_id)

    def _send_slot(self, now: float) -> float:
        window = [t for t in self.sent if t > now - self.per_seconds]
        if len(window) < self.max_posts:
            return now
        slot = self.sent[-self.max_posts] + self.per_seconds
        return max(now, slot)

    def _apply(self, actions: list[Action], now: float) -> None:
        for action in actions:
            if isinstance(action, PostSingle):
                assert action.task_id not in self.messages
                self.messages[f"single:{action.task_id}"] = (action.task_id,)
                self.new_messages += 1
            elif isinstance(action, PostBatch):
                assert action.batch_id not in self.messages
                assert 2 <= len(action.task_ids) <= self.batcher.policy.max_items
                self.messages[action.batch_id] = action.task_ids
                self.keys[action.batch_id] = action.key
                self.new_messages += 1
                slot = self._send_slot(now)
                self.sent.append(slot)
                self._schedule(slot, "posted", action.batch_id)
            else:
                before = self.messages[action.batch_id]
                assert action.task_ids[: len(before)] == before, "edits only append"
                assert len(action.task_ids) <= self.batcher.policy.max_items
                assert self.keys[action.batch_id] == action.key
                self.messages[action.batch_id] = action.task_ids
                self.edits += 1

    def run(self) -> None:
        while True:
            wake = self.batcher.next_wakeup()
            wake_s = None if wake is None else (wake - T0).total_seconds()
            if self.events and (wake_s is None or self.events[0][0] <= wake_s):
                when, _, kind, payload = heapq.heappop(self.events)
                now = at(when)
                if kind == "arrive":
                    actions = self.batcher.add(payload[0], payload[1], now)
                elif kind == "decide":
                    actions = self.batcher.mark_decided(payload[0], now)
                else:
                    actions = self.batcher.posted(payload[0], f"m-{payload[0]}", now)
                self._apply(actions, when)
            elif wake_s is not None:
                self._apply(self.batcher.tick(at(wake_s)), wake_s)
            else:
                return

    def placement(self) -> dict[str, list[str]]:
        where: dict[str, list[str]] = {}
        for message, items in self.messages.items():
            for task_id in items:
                where.setdefault(task_id, []).append(message)
        return where


@pytest.mark.parametrize(("count", "limit"), [(200, 10), (1000, 60)])
def test_burst_becomes_few_full_messages(count: int, limit: int) -> None:
    sim = Simulation(Batcher())
    for i in range(count):
        sim.arrive(10.0 * i / count, f"t{i}")
    sim.run()
    assert sim.new_messages <= limit
    assert sim.new_messages == math.ceil(count / 20)
    placement = sim.placement()
    assert sorted(placement) == sorted(f"t{i}" for i in range(count))
    assert all(len(messages) == 1 for messages in placement.values()), "one message per task"
    assert sim.batcher.snapshot()["groups"] == []


@pytest.mark.parametrize(("count", "limit"), [(200, 10), (1000, 60)])
def test_burst_on_top_of_an_open_batch_stays_within_limit(count: int, limit: int) -> None:
    sim = Simulation(Batcher())
    sim.arrive(0, "early-1")
    sim.arrive(1, "early-2")  # posted at t=30, open for additions
    for i in range(count):
        sim.arrive(100 + 10.0 * i / count, f"t{i}")
    sim.run()
    assert sim.new_messages - 1 <= limit
    placement = sim.placement()
    assert len(placement) == count + 2
    assert all(len(messages) == 1 for messages in placement.values())


def test_random_traffic_keeps_invariants() -> None:
    rng = random.Random(20250101)
    sim = Simulation(Batcher())
    keys = [KEY, OTHER, "decision:-"]
    task_key: dict[str, str] = {}
    decided: set[str] = set()
    clock = 0.0
    for i in range(3000):
        clock += rng.expovariate(1 / 0.5) if rng.random() < 0.9 else rng.uniform(30, 600)
        task_id = f"t{i}"
        task_key[task_id] = rng.choice(keys)
        sim.arrive(clock, task_id, task_key[task_id])
        if rng.random() < 0.5:
            decided.add(task_id)
            sim.decide(clock + rng.uniform(0, 120), task_id)
    sim.run()
    placement = sim.placement()
    decided_early = set(task_key) - set(placement)
    assert all(len(messages) == 1 for messages in placement.values())
    for message, items in sim.messages.items():
        assert len(items) <= 20
        assert len({task_key[t] for t in items}) == 1, f"{message} mixes keys"
    # Only tasks decided before they were shown may be missing.
    assert decided_early <= decided
    assert len(placement) > len(task_key) // 2
    assert sim.batcher.next_wakeup() is None
    assert sim.batcher.unconfirmed_posts() == []
