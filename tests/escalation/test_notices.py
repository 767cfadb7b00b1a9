"""SMS and call texts of the ladder (escalation.notices): ASCII, 160 characters, TwiML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from bot.pager.twiml import call_twiml
from escalation.notices import (
    SMS_MAX_CHARS,
    PageItem,
    ascii_only,
    human_duration,
    late_marker,
    sms_text,
)


def item(title: str = "Deploy GHL MCP server → production", **kw: object) -> PageItem:
    values: dict[object, object] = {
        "task_id": "3f2a9c1e-0000-4000-8000-000000000000",
        "title": title,
        "priority": "critical",
        "overdue_seconds": 5.0,
    }
    values.update(kw)
    return PageItem(**values)  # type: ignore[arg-type]


def test_single_sms_names_task_priority_lateness_and_reference() -> None:
    text = sms_text([item()])
    assert text.isascii() and len(text) <= SMS_MAX_CHARS
    assert "SLA BREACH" in text and "CRIT" in text and "late 5s" in text
    assert "ref 3f2a9c1e" in text and "Deploy GHL MCP server" in text


def test_long_titles_and_many_tasks_still_fit_in_one_segment() -> None:
    many = [item("Ünïcödé 🚀 " + "x" * 300, task_id=f"task-{n:04d}") for n in range(12)]
    for items in ([many[0]], many[:3], many):
        text = sms_text(items)
        assert text.isascii() and len(text) <= SMS_MAX_CHARS, text
    assert "more" in sms_text(many)
    assert sms_text(many[:3]).startswith("Factory SLA: 3 tasks")


def test_digest_and_lateness_in_minutes_and_hours() -> None:
    assert sms_text([item(overdue_seconds=3 * 3600 + 120)], digest=True).startswith(
        "Factory digest"
    )
    assert "late 3h02m" in sms_text([item(overdue_seconds=3 * 3600 + 120)])
    assert "late 7m" in sms_text([item(overdue_seconds=420)])


def test_empty_is_refused() -> None:
    with pytest.raises(ValueError):
        sms_text([])
    with pytest.raises(ValueError):
        call_twiml([])


def test_call_is_valid_twiml_that_says_title_and_lateness() -> None:
    twiml = call_twiml([item("Fix <auth> & deploy", overdue_seconds=3720)])
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    said = [e.text or "" for e in root.iter("Say")]
    assert said and "Fix <auth> & deploy" in said[0] and "1 hours 2 minutes" in said[0]


def test_late_marker_and_durations() -> None:
    assert late_marker(0.4) == ""
    assert late_marker(5.2) == " (late by 5 s)"
    assert human_duration(3 * 86400 + 7200) == "3 d 2 h"
    assert human_duration(59) == "59 s" and human_duration(60) == "1 min"


def test_ascii_only_folds_accents_and_drops_the_rest() -> None:
    assert ascii_only("Café → prod 🚀  now") == "Cafe prod now"


@pytest.mark.parametrize("module", ["notices", "recipients", "ports"])
def test_new_core_modules_stay_pure(module: str) -> None:
    import ast
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "escalation" / f"{module}.py"
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    assert not roots & {"discord", "twilio", "httpx", "aiohttp", "sqlalchemy", "apscheduler"}
