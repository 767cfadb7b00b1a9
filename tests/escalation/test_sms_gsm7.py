"""Paging SMS are GSM-7 basic-set text, so "at most 160 characters" is one segment.

A character outside GSM-7 (the backtick) sends the whole SMS as UCS-2 (70 characters a
segment: a 160-character page becomes 3 SMS), and the extension-table characters
``[ ] { } ~ | ^ \\`` take two septets each (a 160-character page no longer fits in one).
"""

from __future__ import annotations

import pytest

from escalation.notices import SMS_MAX_CHARS, PageItem, sms_text
from escalation.phone import SMS_TWO_SEGMENTS

#: The GSM 7-bit default alphabet, 3GPP TS 23.038 section 6.2.1, by code 0x00 to 0x7F, without
#: 0x1B (the escape to the extension table): each of these is one septet.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ" + "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: A title made of what GSM-7 cannot carry in one septet per character.
TITLE = "Run `make migrate` on [prod] {db} ~ rollback | hotfix ^2 C:\\tmp "


def page(title: str, task_id: str = "task-0001") -> PageItem:
    return PageItem(task_id, title, "high", 300)


def segments(text: str) -> int:
    """How many SMS ``text`` is sent as, when every character is one GSM-7 septet."""
    assert set(text) <= GSM7_BASIC, sorted(set(text) - GSM7_BASIC)
    return 1 if len(text) <= 160 else -(-len(text) // 153)


def test_the_gsm7_table_has_its_127_characters() -> None:
    assert len(GSM7_BASIC) == 127


@pytest.mark.parametrize("title", [TITLE, TITLE * 3])
def test_a_page_with_backticks_and_brackets_is_one_gsm7_segment(title: str) -> None:
    text = sms_text([page(title)])
    assert len(text) <= SMS_MAX_CHARS
    assert segments(text) == 1
    assert "'make migrate' on (prod) (db)" in text  # the title still reads


def test_a_two_way_page_with_backticks_and_brackets_is_at_most_two_segments() -> None:
    text = sms_text([page(TITLE * 3)], two_way=True, link="https://discord.com/channels/1/2/3")
    assert len(text) <= SMS_TWO_SEGMENTS
    assert segments(text) <= 2
    assert "'make migrate' on (prod) (db)" in text


def test_a_bundled_page_of_such_titles_is_one_gsm7_segment() -> None:
    items = [page(TITLE * 2, task_id=f"task-{n:04d}") for n in range(4)]
    for digest in (False, True):
        assert segments(sms_text(items, digest=digest)) == 1
    assert segments(sms_text(items, two_way=True)) <= 2
