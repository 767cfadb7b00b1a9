"""Who each ladder step reaches (escalation.recipients)."""

from __future__ import annotations

from escalation.recipients import (
    Person,
    call_order,
    next_fallback,
    reminder_targets,
    sms_order,
    sms_targets,
)

ALICE = Person("Alice", 1, "+15550000001", "u-a", on_call=True)
DAVE = Person("Dave", 2, "+15550000002", "u-d", on_call=True, admin=True)
ERIN = Person("Erin", 3, "+15550000003", "u-e", admin=True)
CAROL = Person("Carol", 4, "+15550000004", "u-c")
ROSTER = [ALICE, DAVE, ERIN, CAROL]


def test_reminders_go_to_the_assignee_else_on_call() -> None:
    assert reminder_targets(CAROL, ROSTER) == [CAROL]
    assert reminder_targets(None, ROSTER) == [ALICE, DAVE]
    assert reminder_targets(Person("NoDiscord"), ROSTER) == [ALICE, DAVE]


def test_sms_goes_to_assignee_and_on_call_with_reachable_phones_once_each() -> None:
    assert sms_targets(CAROL, ROSTER) == [CAROL, ALICE, DAVE]
    assert sms_targets(DAVE, ROSTER) == [DAVE, ALICE]
    assert sms_targets(None, ROSTER, unreachable={ALICE.phone}) == [DAVE]  # type: ignore[arg-type]


def test_fallback_follows_on_call_then_admins_skipping_tried_and_unreachable() -> None:
    order = sms_order(None, ROSTER)
    assert order == [ALICE, DAVE, ERIN]
    assert next_fallback(order, {"Alice", "Dave"}) == ERIN
    assert next_fallback(order, {"Alice", "Dave", "Erin"}) is None
    assert call_order(ROSTER) == [ALICE, DAVE, ERIN]
    assert next_fallback(call_order(ROSTER), (), {ALICE.phone}) == DAVE  # type: ignore[arg-type]
