"""The custom_id grammar (bot.discord.ids) against the DynamicItems that match it and against
the reconciler that reads posted messages back, and the ``task`` option transformer."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import discord
import pytest

from bot.discord import ids
from bot.discord.batch_views import ApproveLowRiskButton, BatchPickSelect, ReviewAllButton
from bot.discord.pager import PageButton
from bot.discord.transformers import NotATaskId, TaskId, not_a_task_id_text
from bot.discord.views import SnoozeSelect, TaskButton
from bot.reconcile import message_refs

LONGEST_TASK = "T" * 64
LONGEST_BATCH = "b" * 80


def item_template(item: discord.ui.DynamicItem[Any]) -> re.Pattern[str]:
    pattern = type(item).__discord_ui_compiled_template__
    assert isinstance(pattern, re.Pattern)
    return pattern


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (TaskButton("approve", "t-1"), "fb:t:approve:t-1"),
        (TaskButton("ack", LONGEST_TASK), f"fb:t:ack:{LONGEST_TASK}"),
        (SnoozeSelect("t.2"), "fb:snooze:t.2"),
        (BatchPickSelect("b1-t_3"), "fb:b:pick:b1-t_3"),
        (ApproveLowRiskButton(LONGEST_BATCH, 2), f"fb:b:approve-low:{LONGEST_BATCH}"),
        (ReviewAllButton("b7-x"), "fb:b:review:b7-x"),
        (PageButton("history", LONGEST_TASK, 12, "n"), f"fb:pg:history:{LONGEST_TASK}:12:n"),
        (PageButton("pending", "", -1, "p"), "fb:pg:pending::-1:p"),
    ],
)
def test_every_component_id_is_built_by_ids_and_matched_by_its_template(
    item: discord.ui.DynamicItem[Any], expected: str
) -> None:
    custom_id = item.custom_id
    assert custom_id == expected
    assert len(custom_id) <= ids.CUSTOM_ID_MAX  # Discord: custom_id ≤ 100
    assert item_template(item).fullmatch(custom_id)


def test_templates_refuse_what_is_not_the_bridges() -> None:
    assert not re.fullmatch(ids.TASK_BUTTON_TEMPLATE, "fb:t:delete:t-1")
    assert not re.fullmatch(ids.TASK_BUTTON_TEMPLATE, f"fb:t:approve:{LONGEST_TASK}x")
    assert not re.fullmatch(ids.SNOOZE_TEMPLATE, "fb:snooze:t 1")
    assert not re.fullmatch(ids.PAGE_TEMPLATE, "fb:pg:agents::0:n")


def test_task_components_parse_back_to_their_task() -> None:
    for action in ids.TASK_ACTIONS:
        assert ids.parse_task_component(ids.task_button(action, "t-9")) == "t-9"
    assert ids.parse_task_component(ids.snooze_select("t-9")) == "t-9"
    assert ids.parse_task_component(ids.batch_pick("b1-t-9")) is None
    assert ids.parse_task_component("fb:m:reject:t-9:1") is None


def test_modal_ids_round_trip_and_stay_within_discords_limit() -> None:
    custom_id = ids.modal_custom_id("deploy", LONGEST_TASK, 2**63)
    assert len(custom_id) <= ids.CUSTOM_ID_MAX
    assert ids.parse_modal_id(custom_id) == ("deploy", LONGEST_TASK)
    with pytest.raises(ValueError):
        ids.modal_custom_id("reject", "a:b", 1)


def rows(*items: discord.ui.Item[Any]) -> list[dict[str, Any]]:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view.to_components()


def test_the_reconciler_reads_the_task_of_a_task_message_built_here() -> None:
    """bot/reconcile.py keeps its own expression (it may not import the Discord layer)."""
    for item in (TaskButton("reject", LONGEST_TASK), SnoozeSelect(LONGEST_TASK)):
        refs = message_refs(rows(item), [])
        assert refs is not None and refs.task_ids == (LONGEST_TASK,)


def test_the_reconciler_reads_the_items_and_batch_of_a_batch_message_built_here() -> None:
    options = [discord.SelectOption(label=t, value=t) for t in ("t-1", "t-2")]
    components = rows(
        BatchPickSelect("b3-t-1", options),
        ApproveLowRiskButton("b3-t-1", 1),
        ReviewAllButton("b3-t-1"),
    )
    refs = message_refs(components, [])
    assert refs is not None
    assert refs.task_ids == ("t-1", "t-2")
    assert refs.batch_id == "b3-t-1"


async def test_task_option_is_trimmed_and_checked() -> None:
    interaction: Any = SimpleNamespace()
    transformer = TaskId()
    assert await transformer.transform(interaction, "  t-42 ") == "t-42"
    for bad in ("", "two words", "x" * 65, "t-1;drop", "**bold**"):
        with pytest.raises(NotATaskId) as caught:
            await transformer.transform(interaction, bad)
        assert caught.value.text == bad


def test_a_bad_task_option_is_answered_escaped_and_short() -> None:
    text = not_a_task_id_text("**" + "x" * 200)
    assert text.startswith("`\\*\\*")
    assert "Nothing was sent to the factory." in text
    assert len(text) < 250
