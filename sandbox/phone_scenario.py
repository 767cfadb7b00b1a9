"""The sandbox's phone step (README "Phone"): a reply ``ACK`` from a phone, and a call nobody answers
that goes to the next person, through the real twilio library and the Twilio emulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from escalation.phone import phone_ref
from sandbox.transcript import Transcript
from sandbox.world import World

__all__ = ["PhoneScene", "phone_step"]

ALICE_PHONE = "+15550100001"
DAVE_PHONE = "+15550100002"


class _Checks(Protocol):
    def check(self, ok: bool, what: str) -> bool: ...


class PhoneScene(Protocol):
    """What the step needs of ``sandbox.runner.Scenario``."""

    @property
    def world(self) -> World: ...

    @property
    def t(self) -> Transcript: ...

    @property
    def checks(self) -> _Checks: ...

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> bool:
        """Wait for ``predicate`` (seconds); a timeout is a failed check."""
        ...


async def phone_step(self: PhoneScene) -> None:
    """The phone acts (README "Phone"): an SMS reply ACK, and an unanswered call that goes to the
    next person, who presses 1."""
    t = self.t
    twilio = self.world.twilio
    deadline = datetime.now(UTC) + timedelta(seconds=3)
    t.say("Two high tasks breach in 3 s; the on-call answer from their phones")
    texted = await self.world.factory.create_task(
        title="Shopify app to production", priority="high", slaDeadline=deadline.isoformat()
    )
    called = await self.world.factory.create_task(
        title="Calendar MCP to production", priority="high", slaDeadline=deadline.isoformat()
    )
    ref = phone_ref(texted["id"])
    if not await self.until(
        lambda: any(ref in m["body"] and m["to"] == ALICE_PHONE for m in twilio.messages),
        15,
        "the breach SMS reached Alice with its reference",
    ):
        return
    t.flush()
    forged = await twilio.send_sms(ALICE_PHONE, f"ACK {ref}", signature="Zm9yZ2Vk")
    t.say(f"A forged reply 'ACK {ref}' (bad X-Twilio-Signature) → HTTP {forged.status}")
    self.checks.check(forged.status == 403, "a forged Twilio webhook is refused with 403")
    answer = await twilio.send_sms(ALICE_PHONE, f"ack {ref}")
    t.say(f"Alice replies 'ack {ref}' by SMS → {answer.messages}")
    self.checks.check(
        answer.messages == ["Acknowledged: Shopify app to production."]
        and self.world.factory.tasks[texted["id"]]["status"] == "claimed",
        "an SMS reply ACK <ref> acknowledges the task (claimed at the factory)",
    )

    def call_about(phone: str) -> dict[str, Any] | None:
        return next(
            (
                c
                for c in twilio.calls
                if c["to"] == phone and called["id"] in str(c.get("status_callback"))
            ),
            None,
        )

    if not await self.until(
        lambda: call_about(ALICE_PHONE) is not None, 15, "the critical call rang Alice"
    ):
        return
    t.flush()
    first = call_about(ALICE_PHONE)
    assert first is not None
    t.say("Alice does not pick up: Twilio reports the call 'no-answer'")
    await twilio.end_call(first["sid"], "no-answer")
    if not await self.until(
        lambda: call_about(DAVE_PHONE) is not None, 10, "the next on-call (Dave) is called"
    ):
        return
    t.flush()
    second = call_about(DAVE_PHONE)
    assert second is not None
    run = await twilio.answer_call(second["sid"], keys="1")
    t.say(f"Dave answers and presses 1 → the call says: {run.said[-1]!r}")
    self.checks.check(
        self.world.factory.tasks[called["id"]]["status"] == "claimed",
        "an unanswered call went to the next person, whose keypress 1 acknowledged",
    )
    t.flush()
