"""The options of a ``decision`` task, read defensively (contract §1.4 ``TaskType``; Discord's
string select limits: 25 options, 100 characters per label / value / description)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from escalation.models import Task
from escalation.task_kinds import OPTIONS_MAX, decision_options, is_done_task


def task(type_: str = "decision", options: Any = None) -> Task:
    context: dict[str, Any] = {"summary": "choose"}
    if options is not None:
        context["modalConfig"] = {"options": options}
    return Task.model_validate(
        {
            "id": "t-1",
            "title": "Pick one",
            "type": type_,
            "context": context,
            "createdAt": datetime.now(UTC).isoformat(),
        }
    )


def test_strings_and_objects_become_options() -> None:
    found = decision_options(
        task(options=["A", {"value": "b", "label": "Bee", "description": "second"}, {"value": 3}])
    )
    assert [(o.value, o.label, o.description) for o in found.options] == [
        ("A", "A", None),
        ("b", "Bee", "second"),
        ("3", "3", None),
    ]
    assert found.skipped == ()
    assert found.find("b") is not None and found.find("zz") is None
    assert found.options[1].to_wire() == {"value": "b", "label": "Bee"}


def test_bad_items_are_skipped_with_a_reason() -> None:
    found = decision_options(
        task(
            options=[
                "ok",
                "ok",
                "   ",
                None,
                True,
                {"label": "no value"},
                {"value": "v" * 101},
                {"value": "long", "label": "L" * 101},
                {"value": "d", "description": "D" * 300},
            ]
        )
    )
    assert [o.value for o in found.options] == ["ok", "d"]
    assert len(found.options[1].description or "") == 100
    assert len(found.skipped) == 7
    assert "given twice" in found.skipped[0]


def test_at_most_25_options() -> None:
    found = decision_options(task(options=[f"o{n}" for n in range(40)]))
    assert len(found.options) == OPTIONS_MAX
    assert len(found.skipped) == 40 - OPTIONS_MAX


def test_no_options_for_other_types_or_missing_or_malformed_lists() -> None:
    assert decision_options(task("approval", ["a"])).options == ()
    assert decision_options(task()).options == ()
    assert decision_options(task(options={"a": 1})).options == ()


def test_done_tasks() -> None:
    assert is_done_task(task("manual_action")) and is_done_task(task("fix_required"))
    assert not is_done_task(task("approval")) and not is_done_task(task("decision"))
