"""The ladder service (escalation.service) on in-memory fakes of every port.

No database, no Discord, no Twilio, no timers and no real waiting: the clock is injected and
moved by the driver (:meth:`tests.support.ladder_fakes.Rig.walk`), retries "sleep" by moving
it. Every priority's whole ladder is walked; a decision, an acknowledgement, a second wake-up
of a claimed step, retries and Twilio 21610 fallbacks are checked.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from escalation.deliveries import NewDelivery, reported_level
from escalation.ladder import plan
from escalation.models import Priority
from escalation.notices import CallScript
from escalation.policy import EscalationPolicy, SafeDefault, StepKind
from escalation.ports import DeliveryRow
from tests.support.ladder_fakes import ALICE, DAVE, ERIN, Rig, make_rig

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

#: What each step delivers with the roster (Alice, Dave: both on call; Dave is an admin),
#: no assignee and the safe default "deferred": (channel, recipient, status) in write order.
DELIVERIES: dict[str, list[tuple[str, str, str]]] = {
    "reminder_dm": [("dm", "Alice", "pending"), ("dm", "Dave", "pending")],
    "reminder_mention": [("reply", "task", "sent")],
    "sla_warning": [("reply", "task", "sent")],
    "sla_breach": [
        ("alert", "alerts", "sent"),
        ("sms", "Alice", "pending"),
        ("sms", "Dave", "pending"),
    ],
    "critical": [
        ("call", "Alice", "sent"),
        ("reassign", "Dave", "sent"),
        ("decision", "deferred", "sent"),
        ("incident", "alerts", "sent"),
    ],
}

#: The Discord post of each step that posts (announcer method, people mentioned).
POSTS: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "reminder_mention": [("reminder", ("Alice", "Dave"))],
    "sla_warning": [("warning", ("Alice", "Dave"))],
    "sla_breach": [("breach_alert", ("Alice", "Dave"))],
    "critical": [("incident_report", ())],
}


def delivered(rig: Rig, task_id: str, step: str) -> list[tuple[str, str, str]]:
    return [
        (r.channel, r.recipient, r.status) for r in rig.repository.of(task_id) if r.step == step
    ]


@pytest.mark.parametrize("priority", list(Priority))
def test_every_priority_walks_its_whole_ladder_in_order(priority: Priority) -> None:
    rig = make_rig(START)
    tracked = rig.add("t", priority, created=START)
    expected = plan(START, tracked.deadline, rig.service.policy)
    seen: dict[str, list[tuple[str, str, str]]] = {}  # each step's deliveries once it is done

    async def walk() -> None:
        while "t" in rig.alarm.at:
            rig.clock.now = rig.alarm.at["t"]
            await rig.service.wake("t")
            for step in rig.repository.step_rows.get("t", []):
                seen.setdefault(step.step, delivered(rig, "t", step.step))

    asyncio.run(walk())
    steps = rig.repository.step_rows["t"]
    assert [s.step for s in steps] == [p.kind.value for p in expected]
    assert [s.due_at for s in steps] == [p.due_at for p in expected]
    assert all(s.taken_at == s.due_at and s.status == "done" for s in steps)  # on time
    assert steps[-1].step == "critical" and len(steps) >= 3
    assert seen == {s.step: DELIVERIES[s.step] for s in steps}
    posts = [(what, people) for what, _, people, _ in rig.announcer.posts]
    assert posts == [post for s in steps for post in POSTS.get(s.step, [])]
    assert [to for to, _ in rig.pager.calls] == [ALICE.phone]
    assert "past its deadline" in rig.pager.calls[0][1].speech
    assert rig.decider.reassigned == [("t", "Dave")]
    assert rig.decider.decided == [("t", "deferred")]
    # decided by the safe default: the DMs and SMS the bundler had not sent are cancelled
    assert {r.status for r in rig.repository.of("t") if r.channel in ("dm", "sms")} == {"cancelled"}
    assert "t" not in rig.alarm.at and rig.slept == []


def test_a_decision_stops_everything_still_pending() -> None:
    rig = make_rig(START)
    tracked = rig.add("t", Priority.HIGH, created=START)
    first = plan(START, tracked.deadline, rig.service.policy)[0]
    asyncio.run(rig.walk("t", until=first.due_at))
    assert delivered(rig, "t", "reminder_dm") == DELIVERIES["reminder_dm"]
    rig.tasks.update("t", decision="approved", decided_by="alice")
    rig.service.mark_changed("t")
    rig.alarm.set("t", rig.clock())
    asyncio.run(rig.walk("t"))
    assert [r.status for r in rig.repository.of("t")] == ["cancelled", "cancelled"]
    assert [s.step for s in rig.repository.step_rows["t"]] == ["reminder_dm"]
    assert "t" not in rig.alarm.at and "t" not in rig.service.history
    assert rig.announcer.posts == [] and rig.pager.calls == []
    assert ("t", "escalation.stopped", "ok") in [e[:3] for e in rig.audit.entries]


def test_an_acknowledgement_stops_the_reminders_but_not_the_breach() -> None:
    rig = make_rig(START)
    rig.add("t", Priority.HIGH, created=START, acknowledged_at=START)
    asyncio.run(rig.walk("t"))
    assert [s.step for s in rig.repository.step_rows["t"]] == ["sla_breach", "critical"]


def test_an_acknowledgement_during_a_claimed_reminder_cancels_its_delivery() -> None:
    rig = make_rig(START)
    tracked = rig.add("t", Priority.HIGH, created=START)
    mention = next(
        p for p in plan(START, tracked.deadline, rig.service.policy)
        if p.kind is StepKind.REMINDER_MENTION
    )  # fmt: skip
    claim = rig.repository.claim_step(
        "t", "reminder_mention", due_at=mention.due_at, now=mention.due_at,
        deliveries=[NewDelivery("reply", "task")],
    )  # fmt: skip
    assert asyncio.run(claim)
    rig.tasks.update("t", acknowledged_at=mention.due_at)
    rig.clock.now = mention.due_at + timedelta(seconds=5)
    rig.alarm.set("t", rig.clock())
    asyncio.run(rig.service.wake("t"))  # resumes the claimed step
    assert delivered(rig, "t", "reminder_mention") == [("reply", "task", "cancelled")]
    assert rig.repository.step_rows["t"][0].status == "done"
    assert rig.announcer.posts == []


def test_a_second_wake_up_does_not_take_a_claimed_step_again() -> None:
    rig = make_rig(START)
    tracked = rig.add("t", Priority.CRITICAL, created=START)
    breach = tracked.deadline
    rig.clock.now = breach
    # steps before the breach were taken; two wake-ups at the breach race for its claim
    for p in plan(START, tracked.deadline, rig.service.policy):
        if p.due_at < breach:
            assert asyncio.run(
                rig.repository.claim_step(
                    "t", p.kind.value, due_at=p.due_at, now=p.due_at, deliveries=[], done_outcome={}
                )
            )
    rig.repository.yield_in_claims = True

    async def race() -> list[datetime | None]:
        return list(await asyncio.gather(*(rig.service.on_wake("t", breach) for _ in range(2))))

    wakes = asyncio.run(race())
    assert [s.step for s in rig.repository.step_rows["t"]].count("sla_breach") == 1
    assert [p[0] for p in rig.announcer.posts] == ["breach_alert"]
    assert rig.announcer.refreshed == ["t"]  # the loser of the claim did nothing
    assert all(w is not None and w > breach for w in wakes)  # next: the critical step
    asyncio.run(rig.service.on_wake("t", breach))  # and once more, later: nothing new
    assert [p[0] for p in rig.announcer.posts] == ["breach_alert"]
    assert len([r for r in rig.repository.of("t") if r.step == "sla_breach"]) == 3


def test_retryable_failures_are_retried_with_the_injected_sleep_then_sent_once() -> None:
    rig = make_rig(START)
    rig.pager.transient = 2  # the call: 503 twice (Retry-After 3 s), then accepted
    rig.announcer.fail = 1  # the first post: 503 once
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert rig.slept == [0.5, 3.0, 3.0]  # Retry-After wins when longer than the backoff
    assert len(rig.pager.calls) == 1
    assert [p[0] for p in rig.announcer.posts].count("breach_alert") == 1


def test_21610_marks_the_phone_unreachable_and_calls_the_next_on_call() -> None:
    rig = make_rig(START, people=(ALICE, DAVE, ERIN))
    rig.pager.stopped.add(ALICE.phone or "")
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert [to for to, _ in rig.pager.calls] == [DAVE.phone]
    assert rig.repository.phones == {ALICE.phone}
    calls = [d for d in delivered(rig, "t", "critical") if d[0] == "call"]
    assert calls == [("call", "Alice", "unreachable"), ("call", "Dave", "sent")]
    assert any(e[1] == "escalation.phone_unreachable" for e in rig.audit.entries)


def test_without_a_pager_calls_are_skipped_and_without_a_safe_default_nothing_decides() -> None:
    rig = make_rig(START, pager=False, safe_default=SafeDefault.NONE)
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert delivered(rig, "t", "critical") == [
        ("call", "Alice", "skipped"),
        ("reassign", "Dave", "sent"),
        ("incident", "alerts", "sent"),
    ]
    assert rig.decider.decided == [] and "t" not in rig.alarm.at  # every step was taken


def test_recover_settles_claimed_deliveries_and_rebuild_arms_open_tasks() -> None:
    rig = make_rig(START)
    tracked = rig.add("t", Priority.HIGH, created=START)
    rig.add("u", Priority.LOW, created=START)
    breach = tracked.deadline
    claim = rig.repository.claim_step(
        "t", "sla_breach", due_at=breach, now=breach,
        deliveries=[NewDelivery("alert", "alerts"), NewDelivery("sms", "Alice")],
    )  # fmt: skip
    assert asyncio.run(claim)
    alert = rig.repository.of("t")[0]
    assert asyncio.run(rig.repository.claim_deliveries([alert.id], breach))
    rig.clock.now = breach + timedelta(seconds=5)
    asyncio.run(rig.service.recover())
    assert rig.repository.rows[alert.id].status == "unknown"  # maybe posted: not repeated
    assert any("not repeated" in e[3] for e in rig.audit.entries)
    wakes = asyncio.run(rig.service.rebuild())
    assert wakes["t"] == rig.clock()  # its claimed step is resumed at once
    low = plan(START, rig.tasks.tasks["u"].deadline, rig.service.policy)[0]
    assert wakes["u"] == low.due_at


def test_five_thousand_ladders_walk_to_their_end() -> None:
    """Thousands of whole ladders through the service on the fakes (no database, no timer:
    the clock jumps to each wake-up), each checked step by step; how fast this runs is
    bench/ladder_core.py's business, not this test's."""
    policy = EscalationPolicy(quiet_hours=None, safe_default=SafeDefault.NONE)
    rig = make_rig(START, policy=policy)
    priorities = list(Priority)
    count = 5000
    for n in range(count):
        rig.add(f"t{n}", priorities[n % 4], created=START)

    async def walk_all() -> int:
        return sum([await rig.walk(f"t{n}") for n in range(count)])

    wakes = asyncio.run(walk_all())
    assert wakes >= 3 * count
    assert len(rig.repository.step_rows) == count and rig.alarm.at == {}
    # without a safe default nothing decides: every step of every ladder was taken, in
    # order, once, and did what it delivers (the DMs and SMS wait for the bundler)
    statuses = {
        **{step: [status for *_, status in rows] for step, rows in DELIVERIES.items()},
        "critical": ["sent", "sent", "sent"],  # call, reassign, incident report
    }
    for n in range(count):
        task_id = f"t{n}"
        priority = priorities[n % 4]
        expected = [p.kind.value for p in plan(START, policy.deadline_for(START, priority), policy)]
        steps = rig.repository.step_rows[task_id]
        assert [s.step for s in steps] == expected, task_id
        assert all(s.status == "done" for s in steps), task_id
        for s in steps:
            assert [r.status for r in rig.repository.of(task_id) if r.step == s.step] == (
                statuses[s.step]
            ), (task_id, s.step)
            outcome = [d["status"] for d in s.outcome["deliveries"]]
            assert outcome == statuses[s.step], (task_id, s.step)
    assert len(rig.pager.calls) == count and len(rig.decider.reassigned) == count
    posts = sum(
        len(POSTS.get(s.step, [])) for rows in rig.repository.step_rows.values() for s in rows
    )
    assert len(rig.announcer.posts) == posts


def test_a_step_reads_its_deliveries_once_and_once_more_for_its_outcome() -> None:
    """The step's rows are kept in hand between its deliveries (not read again after each)."""
    rig = make_rig(START)
    reads: list[str | None] = []
    read = rig.repository.deliveries

    async def counted(**filters: Any) -> list[DeliveryRow]:
        reads.append(filters.get("step"))
        return await read(**filters)

    rig.repository.deliveries = counted  # type: ignore[method-assign]
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert [d[2] for d in delivered(rig, "t", "critical")] == ["sent"] * 4
    assert reads.count("critical") == 2  # four deliveries done: one read, then the outcome


def _reads_of_the_wake_up_that(rig: Rig, done: Callable[[], bool]) -> list[str]:
    """Wake task ``t`` at each of its wake-ups until ``done()``; the task reads (ids) made
    by that last wake-up."""
    reads: list[str] = []
    get = rig.tasks.get

    async def counted(task_id: str) -> Any:
        reads.append(task_id)
        return await get(task_id)

    rig.tasks.get = counted  # type: ignore[method-assign]

    async def walk() -> None:
        while not done():
            reads.clear()
            rig.clock.now = max(rig.clock.now, rig.alarm.at["t"])
            await rig.service.wake("t")

    asyncio.run(walk())
    return reads


def test_a_step_that_only_posts_does_not_read_the_task_again_after_it() -> None:
    """A reminder reply changes nothing of the task: one read at the wake-up and one before
    the delivery (the stop check), none after the step (each is a store query in the bridge)."""
    rig = make_rig(START)
    rig.add("t", Priority.HIGH, created=START)
    reads = _reads_of_the_wake_up_that(rig, lambda: bool(rig.announcer.posts))
    assert [p[0] for p in rig.announcer.posts] == ["reminder"]
    assert reads == ["t", "t"]
    assert "t" in rig.alarm.at  # the next step is armed all the same


def test_after_a_safe_default_the_task_is_read_again_and_the_ladder_stops_at_once() -> None:
    """A step that called the factory re-reads the task: the safe default decided it, so the
    pending deliveries are cancelled in that same wake-up, not at a later one."""
    rig = make_rig(START, safe_default=SafeDefault.DEFERRED)
    rig.add("t", Priority.CRITICAL, created=START)
    reads = _reads_of_the_wake_up_that(rig, lambda: bool(rig.decider.decided))
    assert rig.decider.decided == [("t", "deferred")]
    assert len(reads) == 1 + 4 + 1  # the wake-up, before each of 4 deliveries, after the step
    assert "t" not in rig.alarm.at  # no wake-up left: the ladder stopped in this one
    # the breach's SMS still waiting for the bundler are cancelled: nobody is paged after
    assert [r.status for r in rig.repository.of("t") if r.channel == "sms"] == ["cancelled"] * 2


def test_a_delivery_another_writer_claimed_meanwhile_is_not_done_again() -> None:
    rig = make_rig(START)
    rig.add("t", Priority.CRITICAL, created=START)
    place_call = rig.pager.call

    async def call_and_race(to: str, script: CallScript) -> str:
        # while the call is placed, another writer claims the step's incident report
        incident = next(r for r in rig.repository.of("t") if r.channel == "incident")
        assert await rig.repository.claim_deliveries([incident.id], rig.clock())
        return await place_call(to, script)

    rig.pager.call = call_and_race  # type: ignore[method-assign]
    asyncio.run(rig.walk("t"))
    assert delivered(rig, "t", "critical")[-1] == ("incident", "alerts", "claimed")
    assert "incident_report" not in [p[0] for p in rig.announcer.posts]
    assert [d[0] for d in delivered(rig, "t", "critical") if d[2] == "sent"] == [
        "call", "reassign", "decision",
    ]  # fmt: skip


def test_the_history_after_each_wake_up_is_what_the_store_holds() -> None:
    """The step rows kept in hand after a step (not read again) are the stored ones, as the
    history keeps them (outcomes that reported no escalation level left out)."""
    rig = make_rig(START)
    rig.add("t", Priority.HIGH, created=START, approval_id="a-1")
    rig.decider.escalate_answers = [("failed", {"error": "factory 503"})]  # level 1 once
    checked = 0

    async def walk() -> None:
        nonlocal checked
        while "t" in rig.alarm.at:
            rig.clock.now = rig.alarm.at["t"]
            await rig.service.wake("t")
            if rig.tasks.tasks["t"].is_decided:
                continue
            stored = [
                r if reported_level(r.outcome) is not None else replace(r, outcome={})
                for r in rig.repository.step_rows.get("t", [])
            ]
            assert rig.service.history["t"] == stored
            checked += 1

    asyncio.run(walk())
    assert checked >= 3
    assert any(r.outcome for r in rig.repository.step_rows["t"])  # some outcome was kept
    assert [level for _, level, _, _ in rig.decider.escalated] == [1, 2, 3, 4]


def test_the_service_loads_no_adapter_and_no_io_library() -> None:
    """Importing the ladder service (and everything it imports) loads no module of ``bot``,
    ``sandbox``, discord.py, twilio, httpx, aiohttp, SQLAlchemy or APScheduler."""
    forbidden = [
        "bot",
        "sandbox",
        "discord",
        "twilio",
        "httpx",
        "aiohttp",
        "sqlalchemy",
        "apscheduler",
    ]
    code = (
        "import sys, escalation.service, escalation.executor, escalation.deliveries; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({forbidden!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.strip()
    assert found == "[]"
