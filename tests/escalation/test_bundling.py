"""Bundling per person and channel, and the quiet-hours digest (issue: bundling, quiet hours)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from escalation.bundling import (
    Bundle,
    BundleKey,
    Notification,
    plan_bundles,
    record_sent,
)
from escalation.ladder import LadderState, schedule
from escalation.models import Priority
from escalation.policy import EscalationPolicy, StepKind

S = timedelta(seconds=1)
T = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
WINDOW = 120.0
DM = StepKind.REMINDER_DM
BREACH = StepKind.SLA_BREACH


def note(
    task: str,
    at: datetime,
    *,
    who: str = "alice",
    channel: str = "dm",
    step: StepKind = DM,
    held: bool = False,
) -> Notification:
    return Notification(
        recipient=who,
        channel=channel,
        task_id=task,
        step=step,
        due_at=at,
        held_for_quiet_hours=held,
    )


class Adapter:
    """A minimal stand-in for the async adapter: pending from 'the store', sent once each."""

    def __init__(self) -> None:
        self.pending: list[Notification] = []
        self.last_sent_at: dict[BundleKey, datetime] = {}
        self.sent: list[tuple[datetime, Bundle]] = []
        self.wake_at: datetime | None = None

    def wake(self, now: datetime) -> list[Bundle]:
        result = plan_bundles(self.pending, self.last_sent_at, now, WINDOW)
        for bundle in result.send_now:
            self.sent.append((now, bundle))
            gone = {n.identity for n in bundle.items}
            self.pending = [n for n in self.pending if n.identity not in gone]
        self.last_sent_at = record_sent(self.last_sent_at, result.send_now, now)
        self.wake_at = result.hold_until
        return list(result.send_now)


def test_first_goes_at_once_later_ones_wait_for_the_window_and_go_together() -> None:
    adapter = Adapter()
    adapter.pending.append(note("t1", T))
    [first] = adapter.wake(T)
    assert [n.task_id for n in first.items] == ["t1"]
    assert not first.is_digest

    adapter.pending.append(note("t2", T + 30 * S))
    assert adapter.wake(T + 30 * S) == []
    assert adapter.wake_at == T + 120 * S

    adapter.pending.append(note("t3", T + 100 * S))
    assert adapter.wake(T + 100 * S) == []
    assert adapter.wake_at == T + 120 * S

    [second] = adapter.wake(T + 120 * S)
    assert second.task_ids == ("t2", "t3")
    assert adapter.pending == []
    assert adapter.wake_at is None

    # That send opened a new window: a fourth item 10 s later waits until +240 s.
    adapter.pending.append(note("t4", T + 130 * S))
    assert adapter.wake(T + 130 * S) == []
    assert adapter.wake_at == T + 240 * S
    [third] = adapter.wake(T + 240 * S)
    assert third.task_ids == ("t4",)
    assert [len(b.items) for _, b in adapter.sent] == [1, 2, 1]


def test_after_the_window_the_next_one_goes_at_once() -> None:
    result = plan_bundles([note("t2", T + 121 * S)], {("alice", "dm"): T}, T + 121 * S, WINDOW)
    assert [b.task_ids for b in result.send_now] == [("t2",)]
    assert result.held == ()


def test_different_people_and_channels_are_not_bundled() -> None:
    pending = [
        note("t1", T, who="alice"),
        note("t1", T, who="bob"),
        note("t2", T, who="alice", channel="sms", step=BREACH),
    ]
    last = {("alice", "dm"): T - 10 * S}
    result = plan_bundles(pending, last, T, WINDOW)
    assert {(b.recipient, b.channel) for b in result.send_now} == {("bob", "dm"), ("alice", "sms")}
    assert [n.key for n in result.held] == [("alice", "dm")]
    assert result.hold_until == T + 110 * S


def test_quiet_hours_digest_has_every_held_item_for_that_person() -> None:
    morning = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    pending = [
        note("t1", morning, held=True),
        note("t2", morning, held=True),
        note("t3", morning, held=True, channel="sms", step=BREACH),
        note("t4", morning, held=True, channel="sms", step=BREACH),
        note("t5", morning, held=True, who="bob"),
    ]
    result = plan_bundles(pending, {}, morning, WINDOW)
    by_key = {b.key: b for b in result.send_now}
    assert set(by_key) == {("alice", "dm"), ("alice", "sms"), ("bob", "dm")}
    assert by_key[("alice", "dm")].task_ids == ("t1", "t2")
    assert by_key[("alice", "sms")].task_ids == ("t3", "t4")
    assert by_key[("bob", "dm")].task_ids == ("t5",)
    assert all(b.is_digest for b in result.send_now)
    assert result.held == () and result.hold_until is None


def test_digest_built_from_the_ladder() -> None:
    # Three medium tasks created in the evening: each mention (+2 h) falls in 22:00-08:00 UTC
    # and is held to 08:00, where the operator gets one digest listing all three.
    policy = EscalationPolicy()
    pending: list[Notification] = []
    for i, created in enumerate(
        [datetime(2026, 1, 5, h, m, tzinfo=UTC) for h, m in ((20, 30), (21, 15), (23, 40))]
    ):
        deadline = policy.deadline_for(created, Priority.MEDIUM)
        for step in schedule(created, deadline, Priority.MEDIUM, policy, LadderState()):
            if step.held_for_quiet_hours and step.kind.is_reminder:
                pending.append(
                    Notification("oncall-1", "dm", f"t{i}", step.kind, step.deliver_at, True)
                )
    morning = datetime(2026, 1, 6, 8, 0, tzinfo=UTC)
    assert {n.due_at for n in pending} == {morning}
    result = plan_bundles(pending, {}, morning, policy.bundle_seconds)
    [digest] = result.send_now
    assert digest.is_digest
    assert digest.task_ids == ("t0", "t1", "t2")


def test_not_yet_due_items_only_set_the_wake_up() -> None:
    result = plan_bundles([note("t1", T + 50 * S)], {}, T, WINDOW)
    assert result.send_now == () and result.held == ()
    assert result.hold_until == T + 50 * S
    # due later but inside the window of a recent send: the window end decides
    result = plan_bundles([note("t1", T + 50 * S)], {("alice", "dm"): T}, T, WINDOW)
    assert result.hold_until == T + 120 * S


def test_duplicates_are_one_item() -> None:
    result = plan_bundles([note("t1", T), note("t1", T)], {}, T, WINDOW)
    [bundle] = result.send_now
    assert len(bundle.items) == 1


def test_zero_window_never_holds() -> None:
    result = plan_bundles([note("t2", T)], {("alice", "dm"): T}, T, 0)
    assert [b.task_ids for b in result.send_now] == [("t2",)]


def test_restart_sends_each_item_once() -> None:
    adapter = Adapter()
    adapter.pending += [note("t1", T), note("t2", T + 10 * S)]
    adapter.wake(T)
    adapter.wake(T + 10 * S)  # t2 held
    adapter.last_sent_at = {}  # kill -9: memory lost, pending survives in the store
    adapter.wake(T + 20 * S)  # t2 goes now (the window is shortened, never doubled)
    adapter.wake(T + 200 * S)
    sent_ids = [n.identity for _, b in adapter.sent for n in b.items]
    assert sorted(sent_ids) == sorted({*sent_ids})
    assert [n.task_id for _, b in adapter.sent for n in b.items] == ["t1", "t2"]


def test_record_sent_does_not_modify_its_input() -> None:
    last: dict[BundleKey, datetime] = {}
    bundle = Bundle("alice", "dm", (note("t1", T),), False)
    updated = record_sent(last, [bundle], T)
    assert updated == {("alice", "dm"): T}
    assert last == {}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="bundle_seconds"):
        plan_bundles([], {}, T, -1)
    with pytest.raises(ValueError, match="naive"):
        plan_bundles([], {}, datetime(2026, 1, 5), WINDOW)
    with pytest.raises(ValueError, match="naive"):
        note("t1", datetime(2026, 1, 5))
