"""The phone's two-way rules (issue 14): reply commands, references, keypresses, the SMS hint."""

from __future__ import annotations

import re

import pytest

from escalation.notices import PageItem, sms_text
from escalation.phone import (
    SMS_TWO_SEGMENTS,
    Command,
    Keypress,
    Reply,
    parse_keypress,
    parse_reply,
    phone_ref,
    reply_hint,
    resolve_ref,
)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("ACK 4821", Reply(Command.ACK, "4821")),
        ("  ack\t4821  ", Reply(Command.ACK, "4821")),
        ("Ack", Reply(Command.ACK)),
        ("ack all", Reply(Command.ACK_ALL)),
        ("ACK  ALL", Reply(Command.ACK_ALL)),
        ("snooze 0093", Reply(Command.SNOOZE, "0093")),
        ("Help", Reply(Command.HELP)),
        ("start", Reply(Command.START)),
        ("UNSTOP", Reply(Command.START)),
    ],
)
def test_replies_ignore_case_and_spacing(body: str, expected: Reply) -> None:
    assert parse_reply(body) == expected


@pytest.mark.parametrize(
    "body", ["", "   ", "APPROVE 4821", "reject", "yes please", "ACK 1 2", "SNOOZE", "HELP me"]
)
def test_anything_else_is_unknown_and_no_decision_by_sms(body: str) -> None:
    assert parse_reply(body).command is Command.UNKNOWN


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Ack!", Reply(Command.ACK)),
        ("ack.", Reply(Command.ACK)),
        ("ack, 4821", Reply(Command.ACK, "4821")),
        ("ack,4821", Reply(Command.ACK, "4821")),
        ("ACK 4821.", Reply(Command.ACK, "4821")),
        ("ACK: 4821!", Reply(Command.ACK, "4821")),
        ("ack #4821", Reply(Command.ACK, "#4821")),
        ('"ACK 4821"', Reply(Command.ACK, "4821")),
        ("Ack all.", Reply(Command.ACK_ALL)),
        ("ACK, ALL!", Reply(Command.ACK_ALL)),
        ("Snooze 0093.", Reply(Command.SNOOZE, "0093")),
        ("help?", Reply(Command.HELP)),
        ("Start.", Reply(Command.START)),
        ("ack task-12.", Reply(Command.ACK, "task-12")),
    ],
)
def test_replies_ignore_surrounding_punctuation_and_a_comma(body: str, expected: Reply) -> None:
    assert parse_reply(body) == expected


@pytest.mark.parametrize(
    "body",
    ["ackbar", "Ackbar!", "no ack", "don't ack", "ack 4821 no", "ack, 1, 2", "!!!", "ack all 4821"],
)
def test_punctuation_does_not_make_nonsense_an_ack(body: str) -> None:
    assert parse_reply(body).command is Command.UNKNOWN


def test_keypresses() -> None:
    assert parse_keypress("1") is Keypress.ACKNOWLEDGE
    assert parse_keypress("2") is Keypress.REPEAT
    assert parse_keypress("9") is Keypress.NONE
    assert parse_keypress(None) is Keypress.NONE
    assert parse_keypress("") is Keypress.NONE


def test_ref_is_four_digits_and_stable() -> None:
    ref = phone_ref("task-123")
    assert re.fullmatch(r"\d{4}", ref)
    assert phone_ref("task-123") == ref
    refs = {phone_ref(f"task-{n}") for n in range(50)}
    assert len(refs) > 45  # spread over 10,000 values


def test_resolve_ref_finds_the_task_or_reports_a_collision() -> None:
    ids = ["task-1", "task-2", "task-3"]
    assert resolve_ref(phone_ref("task-2"), ids) == ["task-2"]
    assert resolve_ref(f" #{phone_ref('task-2')} ", ids) == ["task-2"]
    assert resolve_ref("task-3", ids) == ["task-3"]  # the id itself, copied from Discord
    assert resolve_ref("0000" if phone_ref("task-1") != "0000" else "0001", ids[:1]) == []
    twins = [a for a in (f"t{n}" for n in range(20000)) if phone_ref(a) == phone_ref("t0")]
    assert len(resolve_ref(phone_ref("t0"), twins[:2])) == 2


def test_reply_hint() -> None:
    assert reply_hint(["task-1"]) == f"Reply ACK {phone_ref('task-1')}"
    several = reply_hint(["a", "b", "c", "d"])
    assert several.endswith("or ACK ALL") and several.count("ACK ") == 4
    with pytest.raises(ValueError):
        reply_hint([])


def item(task_id: str, title: str = "Deploy GHL MCP server → production") -> PageItem:
    return PageItem(task_id=task_id, title=title, priority="high", overdue_seconds=65)


def test_two_way_sms_ends_with_the_hint_ascii_two_segments() -> None:
    link = "https://discord.com/channels/900000000000000001/900000000000000101/9100000000001"
    text = sms_text([item("task-1")], two_way=True, link=link)
    ref = phone_ref("task-1")
    assert text.isascii() and len(text) <= SMS_TWO_SEGMENTS
    assert f"ref {ref}" in text and f"Reply ACK {ref}" in text
    assert text.endswith(link)


def test_two_way_sms_of_many_long_tasks_stays_within_two_segments() -> None:
    items = [item(f"task-{n}", "x" * 300 + " é 🚀") for n in range(12)]
    text = sms_text(items, two_way=True, link="https://discord.com/channels/1/2/3")
    assert text.isascii() and len(text) <= SMS_TWO_SEGMENTS
    assert "or ACK ALL" in text and "more" in text


def test_one_way_sms_is_unchanged() -> None:
    text = sms_text([item("task-1")])
    assert len(text) <= 160 and "Reply ACK" not in text


@pytest.mark.parametrize("body", ["YES", "yes", "Yes!"])
def test_yes_is_twilios_opt_in_like_start(body: str) -> None:
    """Twilio opts a number back in after a STOP on a single-word START, YES or UNSTOP; the
    bridge's own STOP mark (it skips that phone) is cleared on the same words."""
    assert parse_reply(body) == Reply(Command.START)


def test_yes_with_more_words_is_not_an_opt_in() -> None:
    assert parse_reply("yes 4821") == Reply(Command.UNKNOWN)
