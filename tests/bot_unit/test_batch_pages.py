"""A batch message of any size is ONE message in pages of 20 items (issue 17).

What a person sees: the page's items in the text and in "Pick an item…", "Page p/P" in the
footer, ◀ / ▶ disabled at the ends, "Approve All Low-Risk (N)" counting every page; every
custom_id parses back to its batch and page, within Discord's 100 characters.
"""

from __future__ import annotations

import re
from dataclasses import MISSING
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.discord import ids
from bot.discord.batch_embeds import PAGE_SIZE, batch_embed, batch_items, clamp_page, page_count
from bot.discord.batch_views import BATCH_DYNAMIC_ITEMS, BatchPageButton, render_batch
from bot.store import TrackedTask
from escalation.models import Task

BATCH_ID = "b7-" + "x" * 64  # the longest id batching makes (b<seq>-<task id>)


def tracked(task_id: str, title: str, *, failed: int = 0, **state: object) -> TrackedTask:
    task = Task.model_validate(
        {
            "id": task_id,
            "title": title,
            "type": "review",
            "stageName": "review",
            "priority": "medium",
            "createdAt": datetime(2026, 11, 21, 10, tzinfo=UTC),
            "context": {
                "summary": f"Review {title}.",
                "testResults": {
                    "total": 47,
                    "passed": 47 - failed,
                    "failed": failed,
                    "skipped": 0,
                    "coveragePercent": 90,
                },
            },
        }
    )
    values: dict[str, object] = {
        name: None
        for name, spec in TrackedTask.__dataclass_fields__.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    values.update(task=task, deadline=task.created_at + timedelta(hours=24))
    values.update(state)
    return TrackedTask(**values)  # type: ignore[arg-type]


def many(n: int, *, high_every: int = 0) -> list[Any]:
    return batch_items(
        [
            tracked(
                f"t-{i:04d}",
                f"server-{i:04d}",
                failed=42 if high_every and i % high_every == 0 else 0,
            )
            for i in range(n)
        ]
    )


def components(rendered: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for row in rendered["view"].to_components() for c in row["components"]]


def pick_values(rendered: dict[str, Any]) -> list[str]:
    (select,) = [c for c in components(rendered) if c["type"] == 3]
    return [o["value"] for o in select["options"]]


def test_45_items_are_three_pages_and_each_item_is_on_exactly_one() -> None:
    items = many(45)
    pages = [render_batch(BATCH_ID, items, page) for page in range(3)]
    values = [pick_values(p) for p in pages]
    assert [len(v) for v in values] == [20, 20, 5]
    assert [v for page in values for v in page] == [i.task_id for i in items]
    for number, rendered in enumerate(pages, start=1):
        embed = rendered["embed"]
        assert embed.title.startswith("📋 45 tasks")  # the whole batch, on every page
        assert embed.footer.text.startswith(f"Page {number}/3")
        assert embed.footer.text.endswith(f"batch {BATCH_ID}")  # where the reconciler reads it
        assert embed.description.count("\n") + 1 == len(values[number - 1])


def test_previous_and_next_are_disabled_at_the_ends_and_point_at_their_page() -> None:
    items = many(45)

    def buttons(page: int) -> dict[str, dict[str, Any]]:
        found = components(render_batch(BATCH_ID, items, page))
        return {c["label"]: c for c in found if c.get("label") in ("◀ Previous", "Next ▶")}

    first, middle, last = buttons(0), buttons(1), buttons(2)
    assert first["◀ Previous"].get("disabled") and not first["Next ▶"].get("disabled")
    assert not middle["◀ Previous"].get("disabled") and not middle["Next ▶"].get("disabled")
    assert last["Next ▶"].get("disabled") and not last["◀ Previous"].get("disabled")
    template = re.compile(ids.BATCH_PAGE_TEMPLATE)
    for label, page in (("◀ Previous", 0), ("Next ▶", 2)):
        match = template.fullmatch(middle[label]["custom_id"])
        assert match is not None
        assert (match["batch_id"], int(match["page"])) == (BATCH_ID, page)
        assert len(middle[label]["custom_id"]) <= ids.CUSTOM_ID_MAX


def test_approve_all_low_risk_counts_every_page() -> None:
    items = many(60, high_every=3)  # 20 high-risk items, 40 low-risk, over three pages
    labels = [c.get("label") for c in components(render_batch(BATCH_ID, items, 2))]
    assert "Approve All Low-Risk (40)" in labels


def test_one_page_shows_no_page_buttons_and_no_page_number() -> None:
    rendered = render_batch(BATCH_ID, many(PAGE_SIZE))
    assert not [c for c in components(rendered) if "▶" in str(c.get("label"))]
    assert not rendered["embed"].footer.text.startswith("Page")


def test_a_page_past_the_end_shows_the_last_page() -> None:
    items = many(41)
    assert page_count(41) == 3 and clamp_page(7, 41) == 2 and clamp_page(-1, 41) == 0
    assert pick_values(render_batch(BATCH_ID, items, 7)) == [items[40].task_id]
    assert batch_embed(BATCH_ID, items, 7).footer.text.startswith("Page 3/3")


def test_review_all_of_a_page_and_the_page_button_are_registered() -> None:
    assert BatchPageButton in BATCH_DYNAMIC_ITEMS
    review = re.compile(ids.BATCH_REVIEW_TEMPLATE)
    match = review.fullmatch(ids.batch_review(BATCH_ID, 3))
    assert match is not None and (match["batch_id"], match["page"]) == (BATCH_ID, "3")
    old = review.fullmatch(ids.batch_review(BATCH_ID))  # messages from before pages
    assert old is not None and old["page"] is None
