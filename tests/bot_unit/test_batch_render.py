"""Batch message rendering (master plan §7): item lines, risk, state, and Discord's limits."""

from __future__ import annotations

from dataclasses import MISSING
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.discord.batch_embeds import (
    BatchItem,
    batch_embed,
    batch_items,
    item_line,
    item_state,
    review_embeds,
)
from bot.discord.batch_views import batch_view, item_view, render_batch
from bot.store import TrackedTask
from escalation.models import Task

BATCH_ID = "b7-" + "x" * 64  # the longest id batching makes (b<seq>-<task id>)


def tracked(task: Task, **state: object) -> TrackedTask:
    values: dict[str, object] = {  # every field without a default (the rest keep theirs)
        name: None
        for name, spec in TrackedTask.__dataclass_fields__.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    values.update(task=task, deadline=task.created_at + timedelta(hours=24))
    values.update(state)
    return TrackedTask(**values)  # type: ignore[arg-type]


def make_task(task_id: str, title: str, *, failed: int = 0, skipped: int = 0, **extra: Any) -> Task:
    base: dict[str, Any] = {
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
                "passed": 47 - failed - skipped,
                "failed": failed,
                "skipped": skipped,
                "coveragePercent": 90,
            },
        },
    }
    base.update(extra)
    return Task.model_validate(base)


def five() -> list[TrackedTask]:
    return [
        tracked(make_task("t-fd", "freshdesk")),
        tracked(make_task("t-hs", "helpscout")),
        tracked(make_task("t-cl", "close")),
        tracked(make_task("t-st", "stripe", skipped=1)),
        tracked(make_task("t-ghl", "ghl", failed=42)),
    ]


def components_of(view: Any) -> list[dict[str, Any]]:
    rows = view.to_components()
    return [c for row in rows for c in row["components"]]


def test_lines_show_the_risk_of_each_item_as_in_the_plan() -> None:
    items = batch_items(five())
    lines = [item_line(i) for i in items]
    assert lines == [
        "✅ **freshdesk** (low risk, tests pass)",
        "✅ **helpscout** (low risk, tests pass)",
        "✅ **close** (low risk, tests pass)",
        "⚠️ **stripe** (med risk, 1 warning)",
        "❌ **ghl** (high risk, 42 failures)",
    ]
    assert [i.approvable_low for i in items] == [True, True, True, False, False]


def test_state_shows_only_confirmed_decisions_as_decided() -> None:
    task = make_task("t-1", "freshdesk")
    assert item_state(tracked(task)) is None
    approved = tracked(task, decision="approved", decided_by="alice", decided_by_discord_id=42)
    assert item_state(approved) == "✅ approved by <@42>"
    rejected = tracked(task, decision="rejected", decided_by="bob", decision_notes="No tests.")
    assert item_state(rejected) == "❌ rejected by bob: No tests."
    inflight = tracked(task, inflight_decision="approved", inflight_by_name="carol")
    assert item_state(inflight) == "⏳ approved being recorded (carol)"
    assert not BatchItem(inflight, batch_items([inflight])[0].risk).pending
    acked = tracked(
        task, acknowledged_by_name="dave", acknowledged_at=datetime(2026, 11, 21, tzinfo=UTC)
    )
    assert item_state(acked) == "👀 acknowledged by dave"


def test_embed_title_footer_and_notice() -> None:
    items = five()
    items[0] = tracked(items[0].task, decision="approved", decided_by_discord_id=42)
    embed = batch_embed("b1-t-fd", batch_items(items, notices={"t-st": "⚠️ approval failed"}))
    data = embed.to_dict()
    assert data["title"] == "📋 5 tasks ready for review"
    assert data["footer"]["text"] == "1 approved · 4 pending · batch b1-t-fd"
    assert "⚠️ **stripe** (med risk, 1 warning) — ⚠️ approval failed" in data["description"]


async def test_twenty_long_items_fit_discords_limits() -> None:
    long_items = [
        tracked(
            make_task(
                f"t-{i:02d}-" + "i" * 58,
                "T" * 300,
                context={"summary": "S" * 5000, "testResults": None},
            ),
            decision="rejected" if i % 3 == 0 else None,
            decided_by="x" * 200,
            decision_notes="n" * 2000,
        )
        for i in range(20)
    ]
    items = batch_items(long_items, notices={long_items[1].task_id: "w" * 3000})
    rendered = render_batch(BATCH_ID, items)
    embed = rendered["embed"].to_dict()
    assert len(embed["title"]) <= 256
    assert len(embed["description"]) <= 4096
    assert len(rendered["embed"]) <= 6000
    components = components_of(rendered["view"])
    select = components[0]
    assert select["type"] == 3 and select["custom_id"] == f"fb:b:pick:{BATCH_ID}"
    assert len(select["options"]) == 20
    for option in select["options"]:
        assert len(option["label"]) <= 100 and len(option.get("description", "")) <= 100
        assert len(option["value"]) <= 100
    assert all(len(c["custom_id"]) <= 100 for c in components)
    assert len(rendered["view"].to_components()) <= 5
    chunks = review_embeds(items)
    assert sum(len(c) for c in chunks) == 20
    for chunk in chunks:
        assert len(chunk) <= 10
        assert sum(len(e) for e in chunk) <= 6000


async def test_bulk_button_counts_low_risk_pending_items_and_disappears_when_all_decided() -> None:
    items = batch_items(five())
    labels = [c.get("label") for c in components_of(batch_view("b1", items))]
    assert "Approve All Low-Risk (3)" in labels and "Review All" in labels
    decided = [tracked(t.task, decision="approved") for t in five()[:3]] + five()[3:]
    view = batch_view("b1", batch_items(decided))
    button = next(c for c in components_of(view) if c.get("custom_id") == "fb:b:approve-low:b1")
    assert button["label"] == "Approve All Low-Risk (0)" and button["disabled"] is True
    all_decided = [tracked(t.task, decision="approved") for t in five()]
    assert batch_view("b1", batch_items(all_decided)) is None


async def test_a_picked_item_gets_its_own_decision_buttons_until_decided() -> None:
    (item,) = batch_items([five()[4]])
    ids = [c["custom_id"] for c in components_of(item_view(item))]
    assert ids == ["fb:t:approve:t-ghl", "fb:t:reject:t-ghl", "fb:t:ack:t-ghl"]
    (done,) = batch_items([tracked(item.tracked.task, decision="rejected")])
    assert item_view(done) is None


def test_a_guarded_task_already_in_a_batch_needs_its_own_decision() -> None:
    # a batch message made before the deploy guard may hold a staging → production promotion
    deploy = tracked(make_task("t-prod", "ghl", stageName="staging"))
    items = batch_items([*five()[:3], deploy])
    assert [i.approvable_low for i in items] == [True, True, True, False]
    assert items[3].risk.risk.value == "low"  # low risk, yet never in a bulk approval
    assert "🚀 production deploy: needs its own decision" in item_line(items[3])
    assert "Approve All Low-Risk (3)" in str(batch_view(BATCH_ID, items).to_components())
