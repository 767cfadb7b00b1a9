"""A critical call Twilio refuses calls the next person (README "Phone": "Nobody answers").

Twilio refuses to create a call with a permanent error (e.g. 21211 "Invalid 'To' Phone
Number", 21215 / 21219 not permitted) or keeps failing past the retries; nobody's phone rings,
so the next operator of the call order is called, exactly as after a call Twilio accepted and
then reported ``failed``. Walked on the in-memory fakes (``tests.support.ladder_fakes``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from escalation.deliveries import NewDelivery
from escalation.models import Priority
from escalation.policy import StepKind
from tests.support.ladder_fakes import ALICE, DAVE, ERIN, Rig, make_rig

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def calls(rig: Rig, task_id: str = "t") -> list[tuple[str, str]]:
    """The task's call deliveries: (recipient, status), oldest first."""
    return [(r.recipient, r.status) for r in rig.repository.of(task_id) if r.channel == "call"]


@pytest.mark.parametrize("code", [21211, 21215, 21219])
def test_a_call_twilio_refuses_calls_the_next_on_call(code: int) -> None:
    rig = make_rig(START, people=(ALICE, DAVE, ERIN))
    rig.pager.refused_calls[ALICE.phone or ""] = code
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert [to for to, _ in rig.pager.calls] == [DAVE.phone]  # Dave's phone rang
    assert calls(rig) == [("Alice", "failed"), ("Dave", "sent")]
    assert rig.repository.phones == set()  # a refusal is not a STOP: Alice stays reachable
    fallbacks = [e[3] for e in rig.audit.entries if e[1:3] == ("escalation.call", "fallback")]
    assert fallbacks == ["critical: trying the next on-call, Dave"]


def test_a_call_still_failing_after_the_retries_calls_the_next_on_call() -> None:
    rig = make_rig(START, people=(ALICE, DAVE, ERIN))
    rig.pager.transient = 5  # Twilio 503 on every attempt of Alice's call, then up again
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert [to for to, _ in rig.pager.calls] == [DAVE.phone]
    assert calls(rig) == [("Alice", "failed"), ("Dave", "sent")]


def test_when_every_call_is_refused_the_chain_ends_and_says_nobody_is_left() -> None:
    rig = make_rig(START, people=(ALICE, DAVE, ERIN))
    for person in (ALICE, DAVE, ERIN):
        rig.pager.refused_calls[person.phone or ""] = 21211
    rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))
    assert rig.pager.calls == []
    assert calls(rig) == [("Alice", "failed"), ("Dave", "failed"), ("Erin", "failed")]
    assert (
        "t",
        "escalation.call",
        "failed",
        "critical: nobody left to try after Alice, Dave, Erin",
    ) in rig.audit.entries


def test_a_next_person_call_twilio_refuses_adds_the_following_persons_call() -> None:
    """The phone's next-person call (``deliver_call``) moves on the same way."""
    rig = make_rig(START, people=(ALICE, DAVE, ERIN))
    tracked = rig.add("t", Priority.CRITICAL, created=START)
    asyncio.run(rig.walk("t"))  # Alice's call was placed; she does not answer
    rig.pager.refused_calls[DAVE.phone or ""] = 21211
    dave = NewDelivery("call", "Dave", detail={"after": "Alice", "after_status": "no-answer"})
    now = rig.clock.now  # the phone desk's row for Dave's call, due now
    assert asyncio.run(rig.repository.add_delivery("t", "critical", dave, due_at=now, now=now))
    executor = rig.service.executor
    status, detail = asyncio.run(executor.deliver_call(tracked, StepKind.CRITICAL, "Dave"))
    assert (status, detail["note"]) == ("failed", "next on-call: Erin")
    erin = [r for r in rig.repository.of("t") if r.channel == "call" and r.recipient == "Erin"]
    assert [(r.status, r.due_at) for r in erin] == [("pending", rig.clock.now)]
