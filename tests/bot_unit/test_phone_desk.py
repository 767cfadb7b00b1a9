"""The phone desk (bot.pager.phone_desk) on a real store: a key 1 on an acknowledged task, and
the next-person call when Twilio repeats an unanswered call's final status callback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from bot.outcomes import Actor, Outcome, acknowledger
from bot.pager.phone_desk import PhoneDesk
from bot.roster import Operator, Roster
from bot.store import Store
from bot.store.ladder import LadderStore
from escalation.deliveries import NewDelivery
from escalation.models import Priority, Task
from escalation.phone import Keypress, phone_ref
from escalation.recipients import Person

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
ALICE_PHONE, DAVE_PHONE, ERIN_PHONE = "+15550100001", "+15550100002", "+15550100003"
# the call order: the on-call operators Alice and Dave, then the admin Erin
PEOPLE = [
    Person("Alice", phone=ALICE_PHONE, on_call=True),
    Person("Dave", phone=DAVE_PHONE, on_call=True),
    Person("Erin", phone=ERIN_PHONE, admin=True),
]


class Actions:
    """Records each acknowledgement the desk asks for (each would be a claim at the factory)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.acknowledged: list[tuple[str, str]] = []

    async def acknowledge(
        self, task_id: str, actor: Actor, *, idempotency_seed: str, first: bool = False
    ) -> Outcome:
        self.acknowledged.append((task_id, actor.name))
        await self.store.set_acknowledged(task_id, 0, acknowledger(actor), NOW)
        return Outcome("done", "ok", await self.store.get_task(task_id))


@pytest.fixture
async def desk(store: Store) -> AsyncIterator[tuple[PhoneDesk, list[tuple[Any, ...]]]]:
    """A desk on ``store`` with three people who may be called; (desk, audit entries)."""
    audits: list[tuple[Any, ...]] = []

    async def audit(*entry: Any) -> None:
        audits.append(entry)

    ladder = SimpleNamespace(
        ladder_store=LadderStore(store.db),
        people=lambda: PEOPLE,
        person=lambda key: next((p for p in PEOPLE if p.key == key), None),
        service=SimpleNamespace(unreachable=set(), audit=audit, executor=None),
    )
    roster = Roster(operators=tuple(Operator(name=p.key, phone=p.phone) for p in PEOPLE))

    async def member_roles(discord_user_id: int) -> frozenset[int]:
        return frozenset()

    phone_desk = PhoneDesk(
        bridge=SimpleNamespace(store=store, actions=Actions(store)),  # type: ignore[arg-type]
        roster=roster,
        member_roles=member_roles,
        ladder=ladder,  # type: ignore[arg-type]
        clock=lambda: NOW,
        call_next_after_seconds=60,
    )
    await store.upsert_task(
        Task(id="T1", title="Deploy GHL", priority=Priority.HIGH, created_at=NOW), NOW
    )
    try:
        yield phone_desk, audits
    finally:
        await phone_desk.stop()  # the next-person waits (60 s) are cancelled, never awaited


def claims(phone_desk: PhoneDesk) -> list[tuple[str, str]]:
    """The acknowledgements the desk asked for (task, person): each a claim at the factory."""
    actions: Actions = phone_desk.bridge.actions  # type: ignore[assignment]
    return actions.acknowledged


async def placed_call(ladder_store: LadderStore, recipient: str, sid: str) -> None:
    """The task's pending call to ``recipient`` (or a new one) is placed: Twilio's ``sid``."""
    pending = [
        r
        for r in await ladder_store.deliveries(task_id="T1", channels=["call"])
        if r.recipient == recipient
    ]
    if not pending:
        await ladder_store.claim_step(
            "T1", "critical", due_at=NOW, now=NOW, deliveries=[NewDelivery("call", recipient)]
        )
        pending = await ladder_store.deliveries(task_id="T1", channels=["call"])
    [row] = pending
    assert await ladder_store.claim_deliveries([row.id], NOW)
    await ladder_store.finish_delivery(row.id, "sent", {"sid": sid}, NOW)


async def calls(ladder_store: LadderStore) -> list[tuple[str, str]]:
    return [
        (r.recipient, r.status)
        for r in await ladder_store.deliveries(task_id="T1", channels=["call"])
    ]


async def test_a_repeated_no_answer_callback_calls_nobody_more(
    desk: tuple[PhoneDesk, list[tuple[Any, ...]]],
) -> None:
    phone_desk, audits = desk
    assert phone_desk.ladder is not None
    ladder_store = phone_desk.ladder.ladder_store
    await placed_call(ladder_store, "Alice", "CA1")
    for _ in range(3):  # Twilio retries the same final callback
        await phone_desk.on_call_status(ALICE_PHONE, ["T1"], "no-answer", "CA1")
    assert await calls(ladder_store) == [("Alice", "sent"), ("Dave", "pending")]

    await placed_call(ladder_store, "Dave", "CA2")  # Dave's call is placed, he is busy
    for _ in range(2):
        await phone_desk.on_call_status(DAVE_PHONE, ["T1"], "busy", "CA2")
    assert await calls(ladder_store) == [("Alice", "sent"), ("Dave", "sent"), ("Erin", "pending")]
    fallbacks = [e[3] for e in audits if e[1:3] == ("escalation.call", "fallback")]
    assert fallbacks == [
        "critical: the call to Alice ended no-answer; calling Dave in 60 s",
        "critical: the call to Dave ended busy; calling Erin in 60 s",
    ]


async def test_key_1_on_a_task_acknowledged_meanwhile_says_by_whom_and_claims_nothing(
    desk: tuple[PhoneDesk, list[tuple[Any, ...]]], store: Store
) -> None:
    phone_desk, _ = desk
    await store.set_acknowledged("T1", 0, "Dave via SMS", NOW)  # Dave replied ACK first
    key, said = await phone_desk.on_keypress(ALICE_PHONE, ["T1"], "1", "CA1")
    assert key is Keypress.ACKNOWLEDGE
    assert said == "Already acknowledged by Dave via SMS: Deploy GHL."
    assert claims(phone_desk) == []  # nothing sent to the factory


async def test_key_1_acknowledges_an_open_task_and_a_second_1_does_not_again(
    desk: tuple[PhoneDesk, list[tuple[Any, ...]]],
) -> None:
    phone_desk, _ = desk
    assert await phone_desk.on_keypress(ALICE_PHONE, ["T1"], "1", "CA1") == (
        Keypress.ACKNOWLEDGE,
        "Acknowledged: Deploy GHL.",
    )
    _, said = await phone_desk.on_keypress(DAVE_PHONE, ["T1"], "1", "CA2")
    assert said == "Already acknowledged by Alice via phone: Deploy GHL."
    assert claims(phone_desk) == [("T1", "Alice")]


async def test_an_sms_reply_reads_only_the_open_tasks_paged_to_the_person(
    desk: tuple[PhoneDesk, list[tuple[Any, ...]]], store: Store
) -> None:
    """Months of decided tasks paged to Alice are not read on each of her replies."""
    phone_desk, _ = desk
    assert phone_desk.ladder is not None
    ladder_store = phone_desk.ladder.ladder_store
    for n in range(30):  # paged, then decided long ago
        task = Task(id=f"OLD{n}", title=f"old {n}", priority=Priority.HIGH, created_at=NOW)
        await store.upsert_task(task, NOW)
        await ladder_store.claim_step(
            f"OLD{n}", "sla_breach", due_at=NOW, now=NOW, deliveries=[NewDelivery("sms", "Alice")]
        )
        await store.confirm_decision(
            task, decision="approved", decided_by="alice", discord_user_id=None,
            notes=None, source="button", at=NOW,
        )  # fmt: skip
    await ladder_store.claim_step(
        "T1", "sla_breach", due_at=NOW, now=NOW, deliveries=[NewDelivery("sms", "Alice")]
    )
    for row in await ladder_store.deliveries(channels=["sms"]):
        assert await ladder_store.claim_deliveries([row.id], NOW)
        await ladder_store.finish_delivery(row.id, "sent", {"sid": f"SM{row.id}"}, NOW)
    read: list[str] = []
    get_task = store.get_task

    async def counting(task_id: str) -> Any:
        read.append(task_id)
        return await get_task(task_id)

    store.get_task = counting  # type: ignore[method-assign]
    [tracked] = await phone_desk.open_tasks(Operator(name="Alice", phone=ALICE_PHONE))
    assert tracked.task_id == "T1"
    assert read == ["T1"]


@pytest.mark.parametrize("body", ["HELP", "ACK", "ACK 0000"])
async def test_answers_listing_forty_open_tasks_fit_one_twilio_message(
    desk: tuple[PhoneDesk, list[tuple[Any, ...]]], store: Store, body: str
) -> None:
    """Twilio refuses a ``<Message>`` over 1,600 characters (error 21617): the person would
    get no answer at all. The answer names a few open tasks and says how many more there are."""
    phone_desk, _ = desk
    assert phone_desk.ladder is not None
    ladder_store = phone_desk.ladder.ladder_store
    ids = [f"T{n:03d}" for n in range(40)]
    for n, task_id in enumerate(ids):
        title = f"Deploy service number {n:03d} to production now"
        await store.upsert_task(
            Task(id=task_id, title=title, priority=Priority.HIGH, created_at=NOW), NOW
        )
        await ladder_store.claim_step(
            task_id, "sla_breach", due_at=NOW, now=NOW, deliveries=[NewDelivery("sms", "Alice")]
        )
    for row in await ladder_store.deliveries(channels=["sms"]):
        assert await ladder_store.claim_deliveries([row.id], NOW)
        await ladder_store.finish_delivery(row.id, "sent", {"sid": f"SM{row.id}"}, NOW)
    assert "0000" not in {phone_ref(i) for i in ids}  # "ACK 0000" names no open task

    answer = await phone_desk.on_sms(ALICE_PHONE, body, "SM-in")
    assert len(answer) <= 1600
    listed = [i for i in ids if f"{phone_ref(i)} Deploy service number" in answer]
    assert listed == ids[: len(listed)] and listed  # the oldest first
    assert f"+{len(ids) - len(listed)} more" in answer
    assert claims(phone_desk) == []  # nothing was acknowledged


def _tracked(**fields: Any) -> Any:
    task = Task.model_validate({"id": "t1", "title": "Release", "createdAt": NOW.isoformat()})
    return SimpleNamespace(task=task, is_decided=False, **fields)


def test_only_a_conflict_on_a_task_acknowledged_first_says_by_whom() -> None:
    """A snooze or an acknowledgement refused for another reason (the role) on a task someone
    acknowledged is said as refused, as audited; only the phone's conflict names who was first."""
    acked = _tracked(acknowledged_at=NOW, acknowledged_by_name="Dave via SMS")
    conflict = Outcome("conflict", "Already acknowledged by Dave via SMS.", acked)
    refused = Outcome("refused", "You need an approver role to snooze this task.", acked)
    assert PhoneDesk._said(conflict, "Acknowledged", acked).startswith(
        "Already acknowledged by Dave via SMS"
    )
    assert PhoneDesk._said(refused, "Snoozed 1 h", acked) == (
        "Not done (Release): You need an approver role to snooze this task."
    )
