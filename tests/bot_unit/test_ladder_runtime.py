"""The ladder runtime in-process, with a fake Discord, a fake pager and an injected clock.

The timer is not started: each test moves the clock and calls ``runtime.tick()`` (what a
wake-up does), then ``runtime.drain()`` (wait for the sends under way).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.bridge import Bridge
from bot.ladder import LadderRuntime
from bot.roster import Operator, Roster
from bot.settings import Settings
from bot.store import Store
from bot.store.ladder import LadderStore, NewDelivery
from escalation.models import Priority, Task, TaskDecision, TaskStatus
from escalation.ports import DeliveryError, RecipientUnreachable

ALICE = Operator(
    name="Alice", factory_user_id="u-alice", discord_user_id=11, phone="+15550000001", on_call=True
)
DAVE = Operator(
    name="Dave",
    factory_user_id="u-dave",
    discord_user_id=12,
    phone="+15550000002",
    on_call=True,
    admin=True,
)
ERIN = Operator(
    name="Erin", factory_user_id="u-erin", discord_user_id=13, phone="+15550000003", admin=True
)
TASKS, ALERTS, MESSAGE = 100, 200, 5000


class Clock:
    """A settable aware-UTC clock."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeMessenger:
    dms: list[tuple[int, str]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)
    everyone: bool = True
    fail_posts: int = 0

    async def send_dm(self, user_id: int, content: str) -> int:
        if user_id in self.closed:
            raise RecipientUnreachable("Discord 403 50007", code=50007, status=403)
        self.dms.append((user_id, content))
        return len(self.dms)

    async def post(
        self,
        channel_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        user_ids: Sequence[int] = (),
        everyone: bool = False,
    ) -> int:
        if self.fail_posts:
            self.fail_posts -= 1
            raise DeliveryError("Discord 503", status=503, retryable=True)
        self.posts.append(
            {
                "channel": channel_id,
                "content": content,
                "reply_to": reply_to,
                "users": list(user_ids),
                "everyone": everyone,
            }
        )
        return len(self.posts)

    def may_mention_everyone(self, channel_id: int) -> bool:
        return self.everyone


@dataclass
class FakePager:
    sms: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    stopped: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)  # 21614: not a mobile number
    transient: int = 0
    attempts: int = 0

    async def _check(self, to: str) -> None:
        self.attempts += 1
        if to in self.stopped:
            raise RecipientUnreachable("Twilio 400 21610", code=21610, status=400)
        if to in self.refused:
            raise DeliveryError("Twilio 400 21614", code=21614, status=400)
        if self.transient:
            self.transient -= 1
            raise DeliveryError("Twilio 503", status=503, retryable=True)

    async def send_sms(self, to: str, body: str) -> str:
        await self._check(to)
        self.sms.append((to, body))
        return f"SM{len(self.sms)}"

    async def call(self, to: str, twiml: str) -> str:
        await self._check(to)
        self.calls.append((to, twiml))
        return f"CA{len(self.calls)}"

    async def aclose(self) -> None:
        return None


class FakeFactory:
    """Just what the critical step uses: reassign and complete."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.reassigned: list[tuple[str, str, str]] = []
        self.completed: list[tuple[str, str, str]] = []
        self.tasks: dict[str, Task] = {}

    async def reassign_task(
        self, task_id: str, *, assignee_id: str, reason: str, idempotency_key: str
    ) -> Task:
        self.reassigned.append((task_id, assignee_id, idempotency_key))
        # the updated Task (contract §1.5): the bridge judges it, a stale one is not "sent"
        task = self.tasks[task_id].model_copy(update={"assignee_id": assignee_id})
        self.tasks[task_id] = task
        return task

    async def complete_task(self, task_id: str, *, decision: str, **kwargs: Any) -> Task:
        self.completed.append((task_id, decision, kwargs["idempotency_key"]))
        return self.tasks[task_id].model_copy(
            update={
                "status": TaskStatus.COMPLETED,
                "decision": TaskDecision(decision),
                "decided_at": self.clock(),
            }
        )

    async def get_task(self, task_id: str) -> Task:
        return self.tasks[task_id]


@dataclass
class Rig:
    runtime: LadderRuntime
    bridge: Bridge
    clock: Clock
    messenger: FakeMessenger
    pager: FakePager
    factory: FakeFactory

    async def add_task(
        self,
        task_id: str,
        *,
        created: datetime,
        sla_seconds: float | None = None,
        priority: Priority = Priority.HIGH,
        assignee: str | None = None,
    ) -> None:
        task = Task(
            id=task_id,
            title=f"Task {task_id}",
            priority=priority,
            created_at=created,
            assignee_id=assignee,
            sla_deadline=created + timedelta(seconds=sla_seconds) if sla_seconds else None,
        )
        self.factory.tasks[task_id] = task
        await self.bridge.track(task)
        await self.bridge.store.set_message(task_id, TASKS, MESSAGE + len(self.factory.tasks))
        tracked = await self.bridge.store.get_task(task_id)
        assert tracked is not None
        await self.runtime.task_opened(tracked)

    async def at(self, when: datetime) -> None:
        """Move the clock to ``when`` and run the wake-ups due by then."""
        self.clock.now = when
        for _ in range(10):  # one step per wake-up: repeat while something is due
            await self.runtime.tick()
            await self.runtime.drain()
            due = [t for t in self.runtime._wake.values() if t <= when.timestamp()]
            if not due:
                break

    async def steps(self, task_id: str) -> list[str]:
        rows = await LadderStore(self.bridge.store.db).steps([task_id])
        return [r.step for r in rows.get(task_id, [])]


def make_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_bot_token": "t",
        "discord_guild_id": 1,
        "discord_tasks_channel_id": TASKS,
        "discord_alerts_channel_id": ALERTS,
        "factory_api_key": "k",
        "factory_webhook_secret": "s",
        "quiet_hours_enabled": False,
        "escalation_dm_after_seconds": 60,
        "escalation_mention_after_seconds": 120,
        "sla_warning_threshold_percent": 25,
        "escalation_critical_after_breach_seconds": 60,
        "escalation_bundle_seconds": 120,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@pytest.fixture
async def make_rig(database_url: str) -> AsyncIterator[Any]:
    stores: list[Store] = []

    async def make(
        *, roster: Sequence[Operator] = (ALICE, DAVE), pager: bool = True, **settings: Any
    ) -> Rig:
        clock = Clock(START)
        store = Store(database_url)
        stores.append(store)
        await store.create_schema()
        factory = FakeFactory(clock)
        bridge = Bridge(
            settings=make_settings(**settings),
            store=store,
            factory=factory,  # type: ignore[arg-type]
            roster=Roster(tuple(roster)),
            clock=clock,
        )
        messenger, fake_pager = FakeMessenger(), FakePager()
        runtime = LadderRuntime(
            bridge=bridge,
            messenger=messenger,
            pager=fake_pager if pager else None,
            clock=clock,
            retry_delays=(0.0, 0.0, 0.0),
        )
        bridge.escalation = runtime
        await runtime.recover()
        return Rig(runtime, bridge, clock, messenger, fake_pager, factory)

    yield make
    for store in stores:
        await store.close()


async def test_whole_ladder_in_order_with_safe_default(make_rig: Any) -> None:
    rig = await make_rig(escalation_safe_default="deferred")
    await rig.add_task("t1", created=START, sla_seconds=600)
    await rig.at(START + timedelta(seconds=60))
    assert sorted(u for u, _ in rig.messenger.dms) == [11, 12]
    await rig.at(START + timedelta(seconds=120))
    assert rig.messenger.posts[-1]["users"] == [11, 12]
    await rig.at(START + timedelta(seconds=450))  # 25 % of 600 s left
    assert rig.messenger.posts[-1]["everyone"] and "@here" in rig.messenger.posts[-1]["content"]
    await rig.at(START + timedelta(seconds=600))
    assert sorted(to for to, _ in rig.pager.sms) == [ALICE.phone, DAVE.phone]
    assert all(len(body) <= 160 and body.isascii() for _, body in rig.pager.sms)
    assert "SLA breached" in rig.messenger.posts[-1]["content"]
    await rig.at(START + timedelta(seconds=660))
    assert [to for to, _ in rig.pager.calls] == [ALICE.phone]
    assert rig.factory.reassigned[0][1] == "u-dave"
    assert rig.factory.completed[0][1] == "deferred"
    rows = await rig.runtime.ladder_store.deliveries(
        task_id="t1", channels=["reassign", "decision"]
    )
    assert {r.channel: r.status for r in rows} == {"reassign": "sent", "decision": "sent"}
    stored = await rig.bridge.store.get_task("t1")
    assert stored is not None and stored.task.assignee_id == "u-dave"  # the answer, stored
    report = rig.messenger.posts[-1]
    assert report["channel"] == ALERTS and "Incident report" in report["content"]
    assert "decision → deferred" in report["content"]
    assert await rig.steps("t1") == [
        "reminder_dm",
        "reminder_mention",
        "sla_warning",
        "sla_breach",
        "critical",
    ]
    assert rig.runtime.wake_at("t1") is None  # decided by the safe default: nothing left


async def test_restart_resumes_a_claimed_step_without_repeating_a_maybe_sent_sms(
    make_rig: Any,
) -> None:
    rig = await make_rig()
    await rig.add_task("t1", created=START, sla_seconds=600)
    ladder = rig.runtime.ladder_store
    breach_at = START + timedelta(seconds=600)
    # a crash mid-breach: step claimed, Alice's SMS claimed (maybe sent), the rest untouched
    await ladder.claim_step(
        "t1",
        "sla_breach",
        due_at=breach_at,
        now=breach_at,
        deliveries=[
            NewDelivery("alert", "alerts"),
            NewDelivery("sms", "Alice"),
            NewDelivery("sms", "Dave"),
        ],
    )
    alice_row = next(r for r in await ladder.deliveries(task_id="t1") if r.recipient == "Alice")
    assert await ladder.claim_deliveries([alice_row.id], breach_at)
    for step in ("reminder_dm", "reminder_mention", "sla_warning"):
        await ladder.claim_step("t1", step, due_at=START, now=START, deliveries=[])
        await ladder.finish_step("t1", step, {})

    rig.clock.now = breach_at + timedelta(seconds=5)
    await rig.runtime.recover()  # what a restart does
    await rig.at(breach_at + timedelta(seconds=5))
    assert [to for to, _ in rig.pager.sms] == [DAVE.phone]  # Alice's is not repeated
    rows = {r.recipient: r.status for r in await ladder.deliveries(task_id="t1")}
    assert rows == {"alerts": "sent", "Alice": "unknown", "Dave": "sent"}
    assert "(late by 5 s)" in rig.messenger.posts[-1]["content"]
    steps = (await ladder.steps(["t1"]))["t1"]
    assert [s.status for s in steps] == ["done"] * 4
    audit = await rig.bridge.store.audit_entries(task_id="t1")
    assert any(a.outcome == "unknown" and "not repeated" in (a.detail or "") for a in audit)


async def test_quiet_hours_hold_then_one_digest_per_person_critical_not_held(
    make_rig: Any,
) -> None:
    rig = await make_rig(
        quiet_hours_enabled=True,
        escalation_dm_after_seconds=1800,
        escalation_mention_after_seconds=50000,
    )
    evening = datetime(2026, 3, 2, 21, 50, tzinfo=UTC)
    rig.clock.now = evening
    await rig.add_task("a", created=evening, priority=Priority.MEDIUM)
    await rig.add_task("b", created=evening + timedelta(minutes=5), priority=Priority.LOW)
    await rig.add_task("c", created=evening, priority=Priority.CRITICAL, sla_seconds=86400)
    await rig.at(datetime(2026, 3, 2, 22, 20, tzinfo=UTC))
    assert len(rig.messenger.dms) == 2  # the critical task's DM, to Alice and to Dave
    assert all("Task c" in text for _, text in rig.messenger.dms)
    await rig.at(datetime(2026, 3, 2, 23, 30, tzinfo=UTC))
    assert len(rig.messenger.dms) == 2  # held
    await rig.at(datetime(2026, 3, 3, 8, 0, tzinfo=UTC))
    digests = rig.messenger.dms[2:]
    assert sorted(u for u, _ in digests) == [11, 12]  # ONE per person
    for _, text in digests:
        assert "Quiet hours are over" in text and "Task a" in text and "Task b" in text


async def test_bundle_window_first_at_once_rest_together(make_rig: Any) -> None:
    rig = await make_rig(escalation_bundle_seconds=120, roster=(ALICE,))
    await rig.add_task("a", created=START)
    await rig.add_task("b", created=START + timedelta(seconds=30))
    await rig.add_task("c", created=START + timedelta(seconds=40))
    await rig.at(START + timedelta(seconds=60))
    assert len(rig.messenger.dms) == 1 and "Task a" in rig.messenger.dms[0][1]
    await rig.at(START + timedelta(seconds=100))
    assert len(rig.messenger.dms) == 1  # b and c wait for the window
    assert rig.runtime._bundle_wake == START + timedelta(seconds=180)
    await rig.at(START + timedelta(seconds=180))
    assert len(rig.messenger.dms) == 2
    assert "Task b" in rig.messenger.dms[1][1] and "Task c" in rig.messenger.dms[1][1]


async def test_decision_cancels_a_held_reminder(make_rig: Any) -> None:
    rig = await make_rig(roster=(ALICE,))
    await rig.add_task("a", created=START)
    await rig.add_task("b", created=START + timedelta(seconds=30))
    await rig.at(START + timedelta(seconds=60))
    await rig.at(START + timedelta(seconds=90))  # b's DM is held in a's window
    assert len(rig.messenger.dms) == 1
    decided = rig.factory.tasks["b"].model_copy(
        update={
            "status": TaskStatus.COMPLETED,
            "decision": TaskDecision.APPROVED,
            "decided_at": rig.clock(),
        }
    )
    await rig.bridge.track(decided)
    await rig.runtime.task_changed("b")
    await rig.at(START + timedelta(seconds=200))
    assert len(rig.messenger.dms) == 1
    rows = await rig.runtime.ladder_store.deliveries(task_id="b")
    assert [r.status for r in rows] == ["cancelled"]
    assert rig.runtime.wake_at("b") is None


async def test_acknowledge_stops_reminders_snooze_delays_them(make_rig: Any) -> None:
    rig = await make_rig(roster=(ALICE,))
    await rig.add_task("a", created=START, sla_seconds=3600)
    await rig.add_task("s", created=START, sla_seconds=3600)
    await rig.bridge.store.set_acknowledged("a", 11, "alice", START)
    await rig.runtime.task_changed("a")
    await rig.bridge.store.set_snoozed("s", START + timedelta(seconds=300), "alice")
    await rig.runtime.task_changed("s")
    await rig.at(START + timedelta(seconds=200))
    assert rig.messenger.dms == [] and rig.messenger.posts == []
    assert rig.runtime.wake_at("a") == START + timedelta(seconds=3600)  # the breach stays
    await rig.at(START + timedelta(seconds=300))
    # the snoozed task: DM and mention both move to the snooze's end; the DM, now at the
    # same time as the stronger mention, is superseded (escalation.ladder): one reminder
    assert rig.messenger.dms == []
    assert len(rig.messenger.posts) == 1 and rig.messenger.posts[0]["users"] == [11]
    assert "reminder" in rig.messenger.posts[0]["content"]
    view = rig.runtime.next_step_for(await rig.bridge.store.get_task("a"))  # type: ignore[arg-type]
    assert view is not None and view.label.startswith("SLA breach")


async def test_transient_failures_are_retried_then_sent_once(make_rig: Any) -> None:
    rig = await make_rig()
    rig.pager.transient = 2
    rig.messenger.fail_posts = 1
    await rig.add_task("t", created=START, sla_seconds=30)  # reminders superseded by breach
    await rig.at(START + timedelta(seconds=30))
    assert len(rig.pager.sms) == 2 and rig.pager.attempts == 4
    assert len([p for p in rig.messenger.posts if "SLA breached" in p["content"]]) == 1


async def test_stop_21610_marks_phone_unreachable_and_texts_the_next_on_call(
    make_rig: Any,
) -> None:
    rig = await make_rig(roster=(ALICE, DAVE, ERIN))
    rig.pager.stopped.add(ALICE.phone)  # type: ignore[arg-type]
    await rig.add_task("t", created=START, sla_seconds=30)
    await rig.at(START + timedelta(seconds=30))
    await rig.at(START + timedelta(seconds=31))  # the fallback delivery goes out
    assert sorted(to for to, _ in rig.pager.sms) == [DAVE.phone, ERIN.phone]
    assert ALICE.phone in await rig.runtime.ladder_store.unreachable()
    audit = await rig.bridge.store.audit_entries(task_id="t")
    assert any(a.action == "escalation.phone_unreachable" for a in audit)
    assert any(a.outcome == "fallback" and "Erin" in (a.detail or "") for a in audit)
    await rig.at(START + timedelta(seconds=90))  # critical: Alice is skipped, Dave is called
    assert [to for to, _ in rig.pager.calls] == [DAVE.phone]


async def test_an_sms_twilio_refuses_texts_the_next_person_instead(make_rig: Any) -> None:
    """A landline (21614) never gets the breach SMS: the next person of the SMS order is
    texted, and the phone is not marked unreachable (only a STOP does that)."""
    rig = await make_rig(roster=(ALICE, DAVE, ERIN))
    rig.pager.refused.add(ALICE.phone)  # type: ignore[arg-type]
    await rig.add_task("t", created=START, sla_seconds=30)
    await rig.at(START + timedelta(seconds=30))
    await rig.at(START + timedelta(seconds=31))  # the fallback delivery goes out
    assert sorted(to for to, _ in rig.pager.sms) == [DAVE.phone, ERIN.phone]
    assert ALICE.phone not in await rig.runtime.ladder_store.unreachable()
    rows = await rig.runtime.ladder_store.deliveries(task_id="t", channels=["sms"])
    assert {(r.recipient, r.status) for r in rows} >= {("Alice", "failed"), ("Erin", "sent")}
    audit = await rig.bridge.store.audit_entries(task_id="t")
    assert any(a.outcome == "fallback" and "Erin" in (a.detail or "") for a in audit)


async def test_no_pager_records_skipped_and_dm_closed_falls_back_to_reply(
    make_rig: Any,
) -> None:
    rig = await make_rig(pager=False)
    rig.messenger.closed.add(11)
    rig.messenger.everyone = False
    await rig.add_task("t", created=START, sla_seconds=300)
    await rig.at(START + timedelta(seconds=60))
    assert [u for u, _ in rig.messenger.dms] == [12]
    fallback = rig.messenger.posts[0]
    assert fallback["reply_to"] is not None and fallback["users"] == [11]
    await rig.at(START + timedelta(seconds=225))  # the warning, without @here permission
    warning = rig.messenger.posts[-1]
    assert not warning["everyone"] and warning["users"] == [11, 12]
    await rig.at(START + timedelta(seconds=360))
    rows = await rig.runtime.ladder_store.deliveries(task_id="t")
    assert {(r.channel, r.status) for r in rows if r.channel in ("sms", "call")} == {
        ("sms", "skipped"),
        ("call", "skipped"),
    }


async def test_rebuild_arms_many_open_tasks_in_bulk(make_rig: Any) -> None:
    rig = await make_rig()
    for n in range(200):
        await rig.add_task(f"t{n}", created=START + timedelta(seconds=n))
    rig.runtime._wake.clear()
    assert await rig.runtime.rebuild() == 200
    assert rig.runtime.wake_at("t7") == START + timedelta(seconds=67)


async def test_a_wake_up_during_a_slow_bundle_flush_does_not_spin(make_rig: Any) -> None:
    """A flush runs in the background; a tick meanwhile must not re-kick itself at once (the
    worker would spin and starve the flush: held reminders never went out)."""
    import asyncio

    rig = await make_rig(
        escalation_bundle_seconds=120, escalation_mention_after_seconds=3600, roster=(ALICE,)
    )
    await rig.add_task("a", created=START)
    await rig.add_task("b", created=START + timedelta(seconds=30))
    await rig.at(START + timedelta(seconds=60))  # a's reminder opens Alice's window
    await rig.at(START + timedelta(seconds=100))
    assert len(rig.messenger.dms) == 1  # b waits for the window that ends at 180 s
    store = rig.runtime.ladder_store
    read = store.pending_reminders
    gate = asyncio.Event()

    async def slow_read(channels: Any) -> Any:
        await gate.wait()
        return await read(channels)

    store.pending_reminders = slow_read  # type: ignore[method-assign]
    rig.clock.now = START + timedelta(seconds=180)
    await rig.runtime.tick()  # starts the flush, which waits on the gate
    rig.runtime._kick.clear()  # what the worker does before each tick
    rig.runtime._started = True  # so that the tick re-arms (the timer itself is not started)
    await rig.runtime.tick()  # a wake-up while it runs
    assert not rig.runtime._kick.is_set()
    gate.set()
    await rig.runtime.drain()
    assert len(rig.messenger.dms) == 2 and "Task b" in rig.messenger.dms[1][1]


async def factory_sla_event(rig: Rig, kind: str, task_id: str, *, deadline: datetime) -> None:
    """The factory's ``task.sla_warning`` / ``task.sla_breached`` handed to the bridge's
    :class:`bot.sla_events.FactorySlaAlerts` (as the event processor does)."""
    from bot.factory.events import parse_event
    from bot.sla_events import FactorySlaAlerts

    alerts = FactorySlaAlerts(
        store=rig.bridge.store,
        roster=rig.bridge.roster,
        settings=rig.bridge.settings,
        messenger=rig.messenger,  # type: ignore[arg-type]
        clock=rig.clock,
    )
    left = (deadline - rig.clock()).total_seconds() / 60
    event = parse_event(
        {
            "type": kind,
            "timestamp": rig.clock().isoformat(),
            "channel": "tasks:*",
            "data": {
                "taskId": task_id,
                "taskTitle": f"Task {task_id}",
                "slaDeadline": deadline.isoformat(),
                "minutesRemaining": max(0.0, left),
            },
        }
    )
    await alerts.handle(event)


@pytest.mark.parametrize("quieted", ["acknowledged", "snoozed"])
async def test_the_factory_warning_of_an_acknowledged_or_snoozed_task_pings_nobody(
    make_rig: Any, quieted: str
) -> None:
    """Acknowledge stops the reminders (the ladder's own warning among them) and a snooze
    delays them: the factory's ``task.sla_warning`` must not ``@here`` the channel either."""
    rig = await make_rig()
    await rig.add_task("t", created=START, sla_seconds=3600)
    if quieted == "acknowledged":
        await rig.bridge.store.set_acknowledged("t", 11, "alice", START)
    else:
        await rig.bridge.store.set_snoozed("t", START + timedelta(hours=4), "alice")
    rig.clock.now = START + timedelta(minutes=50)
    before = len(rig.messenger.posts)
    await factory_sla_event(rig, "task.sla_warning", "t", deadline=START + timedelta(hours=1))
    assert rig.messenger.posts[before:] == []
    audit = await rig.bridge.store.audit_entries(task_id="t")
    assert [a.outcome for a in audit if a.action == "alert.sla_warning"] == ["skipped"]


@pytest.mark.parametrize(("priority", "posted_at_once"), [("medium", False), ("high", True)])
async def test_a_factory_breach_event_in_quiet_hours_waits_like_the_ladder(
    make_rig: Any, priority: str, posted_at_once: bool
) -> None:
    """The factory's ``task.sla_breached`` at 23:00 does not ping ``@here`` for a medium task
    (quiet hours 22:00–08:00): the ladder's own breach alert goes at 08:00, once. A high
    task's breach bypasses quiet hours (``QUIET_HOURS_BYPASS_PRIORITIES``) and is posted."""
    rig = await make_rig(quiet_hours_enabled=True)
    await rig.add_task("t", created=START, sla_seconds=11 * 3600, priority=Priority(priority))
    breach = START + timedelta(hours=11)  # 23:00 UTC
    await rig.at(breach - timedelta(seconds=1))
    rig.clock.now = breach  # the factory's event comes before the ladder's own step
    before = len(rig.messenger.posts)
    await factory_sla_event(rig, "task.sla_breached", "t", deadline=breach)
    factory_posts = [
        p for p in rig.messenger.posts[before:] if "reported by the factory" in p["content"]
    ]
    assert len(factory_posts) == (1 if posted_at_once else 0)
    audit = await rig.bridge.store.audit_entries(task_id="t")
    outcomes = [a.outcome for a in audit if a.action == "alert.sla_breached"]
    assert outcomes == (["posted"] if posted_at_once else ["skipped"])
    await rig.at(START + timedelta(hours=20, minutes=1))  # 08:01: quiet hours are over
    breached = [p for p in rig.messenger.posts if "SLA breached" in p["content"]]
    assert len(breached) == 1 and breached[0]["everyone"]


async def test_sms_added_after_the_tick_stopped_waiting_go_out_at_once(
    make_rig: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a storm, steps claimed after the tick's wait for claims (Discord pacing the alerts)
    added their breach SMS with nobody left to send them: they waited for the next task's
    wake-up (the critical step, hours later). The worker is woken for them."""
    import bot.ladder.runtime as runtime_module

    monkeypatch.setattr(runtime_module, "CLAIM_WAIT_SECONDS", 0.0)  # every claim comes late
    rig = await make_rig(roster=(ALICE, DAVE))
    await rig.add_task("t", created=START, sla_seconds=3600)
    await rig.at(START + timedelta(seconds=3599))
    sent_before = len(rig.pager.sms)
    kick = rig.runtime.timers.kick
    kick.clear()
    rig.clock.now = START + timedelta(seconds=3600)  # the breach
    await rig.runtime.tick()
    await rig.runtime.drain()
    for _ in range(5):  # the worker: a tick per kick
        if not kick.is_set():
            break
        kick.clear()
        await rig.runtime.tick()
        await rig.runtime.drain()
    assert sorted(to for to, _ in rig.pager.sms[sent_before:]) == [ALICE.phone, DAVE.phone]
