"""Unit tests of the ``/factory`` listing renderers (bot.discord.listing): sorting, the
reference 002 §4.3 blocker rules, pagination and Discord's size limits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.discord.blockers import block_reason, blocker_line, find_blockers
from bot.discord.listing import (
    DESCRIPTION_BUDGET,
    PAGE_LINES,
    age_text,
    jump_link,
    page_embed,
    paginate,
    pending_items,
    pending_line,
    pipeline_line,
    sort_pipelines,
    stage_progress,
    status_embed,
    truncate_lines,
)
from escalation.models import Pipeline, Priority, Task

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": fields.pop("id", "t1"),
        "title": "Approve release",
        "priority": "medium",
        "createdAt": NOW - timedelta(hours=1),
    }
    base.update(fields)
    return Task.model_validate(base)


def deadline_of(t: Task) -> datetime:
    return t.sla_deadline or t.created_at + timedelta(hours=24)


def test_age_text() -> None:
    assert age_text(timedelta(seconds=20)) == "<1m"
    assert age_text(timedelta(minutes=12)) == "12m"
    assert age_text(timedelta(hours=3, minutes=5)) == "3h 05m"
    assert age_text(timedelta(days=2, hours=4, minutes=59)) == "2d 4h"
    assert age_text(timedelta(minutes=-5)) == "<1m"


def test_jump_link_needs_channel_and_message() -> None:
    assert jump_link(1, 2, 3) == "https://discord.com/channels/1/2/3"
    assert jump_link(1, None, 3) is None
    assert jump_link(1, 2, None) is None


def test_pending_sorted_breached_first_then_soonest_deadline() -> None:
    tasks = [
        task(id="later", priority="critical", slaDeadline=NOW + timedelta(hours=5)),
        task(id="soon", priority="low", slaDeadline=NOW + timedelta(minutes=5)),
        task(id="breached", priority="low", slaDeadline=NOW - timedelta(minutes=1)),
        task(id="flagged", priority="high", slaDeadline=NOW + timedelta(hours=9), slaBreached=True),
        task(id="done", decision="approved", status="completed"),
    ]
    items = pending_items(tasks, now=NOW, deadline_for=deadline_of, tracked={}, guild_id=1)
    assert [i.task_id for i in items] == ["breached", "flagged", "soon", "later"]
    assert [i.breached for i in items] == [True, True, False, False]


def test_pending_line_has_priority_age_relative_deadline_and_id_without_message() -> None:
    [item] = pending_items(
        [task(title="Ship *it*", priority="high", slaDeadline=NOW + timedelta(hours=1))],
        now=NOW,
        deadline_for=deadline_of,
        tracked={},
        guild_id=1,
    )
    line = pending_line(item, NOW)
    stamp = int((NOW + timedelta(hours=1)).timestamp())
    assert line == f"🟠 **Ship \\*it\\*** · high · age 1h 00m · due <t:{stamp}:R> · `t1`"


def test_block_reason_rules_in_order() -> None:
    far = NOW + timedelta(days=2)
    breached = task(slaBreached=True, slaDeadline=far, blocksStageAdvance=True)
    past = task(slaDeadline=NOW - timedelta(seconds=1))
    old = task(createdAt=NOW - timedelta(hours=5), slaDeadline=far)
    claimed_old = task(
        createdAt=NOW - timedelta(hours=5), slaDeadline=far, status="claimed", assigneeId=None
    )
    assigned = task(slaDeadline=far, assigneeId="user-alice", status="claimed")
    assert block_reason(breached, now=NOW, deadline=far) == "SLA breached"
    assert block_reason(past, now=NOW, deadline=deadline_of(past)) == "SLA breached"
    assert block_reason(old, now=NOW, deadline=far) == "Unclaimed for 4h+"
    assert block_reason(claimed_old, now=NOW, deadline=far) == "Unassigned"
    assert block_reason(assigned, now=NOW, deadline=far) == "Awaiting decision"


def test_find_blockers_filters_and_orders_by_priority_then_hours() -> None:
    far = NOW + timedelta(days=3)
    tasks = [
        task(
            id="m6",
            priority="medium",
            blocksStageAdvance=True,
            slaDeadline=far,
            createdAt=NOW - timedelta(hours=6),
        ),
        task(
            id="h1",
            priority="high",
            blocksStageAdvance=True,
            slaDeadline=far,
            createdAt=NOW - timedelta(hours=1),
        ),
        task(
            id="h5",
            priority="high",
            blocksStageAdvance=True,
            slaDeadline=far,
            createdAt=NOW - timedelta(hours=5),
        ),
        task(id="not-blocking", priority="critical", slaDeadline=far),
        task(id="breached-not-blocking", priority="low", slaDeadline=NOW - timedelta(hours=1)),
        task(id="in-progress", priority="critical", blocksStageAdvance=True, status="in_progress"),
    ]
    pipelines = [
        Pipeline(
            id="p1",
            name="Broken",
            status="failed",
            priority=Priority.HIGH,
            current_stage="testing",
            updated_at=NOW - timedelta(hours=3),
        ),
        Pipeline(id="p2", name="Fine", status="active", priority=Priority.CRITICAL),
    ]
    found = find_blockers(tasks, pipelines, now=NOW, deadline_for=deadline_of)
    assert [b.entity_id for b in found] == ["h5", "p1", "h1", "m6", "breached-not-blocking"]
    assert found[1].title == "Broken — testing failed"
    assert found[1].reason == "Stage failed — requires intervention"
    assert found[-1].reason == "SLA breached"
    assert "**Unclaimed for 4h+**" in blocker_line(found[0])
    assert "blocked 5h 00m" in blocker_line(found[0])


def test_stage_progress_and_pipeline_order() -> None:
    review = Pipeline(id="a", name="A", current_stage="review", status="active")
    done = Pipeline(id="b", name="B", current_stage="published", status="completed")
    failed = Pipeline(id="c", name="C", current_stage="intake", status="failed", priority="low")
    assert stage_progress(review) == "review 5/8 ▰▰▰▰▰▱▱▱"
    assert stage_progress(done) == "published 8/8 ▰▰▰▰▰▰▰▰"
    assert stage_progress(Pipeline(id="d", name="D")) == "stage —"
    assert [p.id for p in sort_pipelines([done, review, failed])] == ["c", "a", "b"]
    assert pipeline_line(review).startswith("▶️ **A** · 🟡 medium · review 5/8")


def test_paginate_by_count_and_by_size() -> None:
    pages = paginate([f"line {n}" for n in range(23)])
    assert [len(p) for p in pages] == [PAGE_LINES, PAGE_LINES, 3]
    big = ["x" * 1500] * 5
    sized = paginate(big)
    assert all(len("\n".join(p)) <= DESCRIPTION_BUDGET for p in sized)
    assert sum(len(p) for p in sized) == 5
    huge = paginate(["y" * 10_000])
    assert len(huge[0][0]) == DESCRIPTION_BUDGET and huge[0][0].endswith("…")
    assert paginate([]) == [[]]


def test_page_embed_fits_discord_limits_and_clamps_page() -> None:
    lines = ["z" * 300] * 40
    pages = paginate(lines)
    embed = page_embed("Pending", pages, 99, total=40, empty="none")
    assert embed.footer.text == f"page {len(pages)}/{len(pages)}"
    assert len(embed.description or "") <= 4096
    assert len(embed) <= 6000
    empty = page_embed("Pending", paginate([]), 0, total=0, empty="Nothing.", note="⚠️ stale")
    assert empty.description == "Nothing." and empty.footer.text == "⚠️ stale"
    assert empty.title == "Pending (0)"


def test_truncate_lines_says_how_many_more() -> None:
    lines = [f"entry {n:02d}" for n in range(50)]
    text = truncate_lines(lines, 100)
    assert len(text) <= 100
    kept = text.split("\n")
    assert kept[-1] == f"…and {50 - (len(kept) - 1)} more"
    assert truncate_lines(["a", "b"], 100) == "a\nb"
    assert truncate_lines(["x" * 200], 20) == "…and 1 more"


def test_status_embed_from_dashboard_summary() -> None:
    summary = {
        "pipelines": {"active": 2, "paused": 0, "completed": 1, "failed": 1},
        "tasks": {
            "pending": 3,
            "inProgress": 1,
            "blocked": 1,
            "avgWaitTimeMinutes": 95,
            "byPriority": {"critical": 1, "high": 2, "medium": 0, "low": 1},
        },
        "agents": {"total": 4, "active": 2, "idle": 1, "error": 1, "offline": 0},
        "slaStatus": {"onTrack": 2, "warning": 1, "breached": 1},
    }
    embed = status_embed(summary)
    values = {f.name: f.value for f in embed.fields}
    assert "🔴 critical: **1**" in values["Open tasks by priority"]
    assert "✅ on track **2** · ⚠️ warning **1** · 🚨 breached **1**" == values["SLA"]
    assert "▶️ active **2**" in values["Pipelines"] and "❌ failed **1**" in values["Pipelines"]
    assert "in error **1** of 4" in values["Agents"]
    assert embed.colour is not None and embed.colour.value == 0xE74C3C
    assert embed.footer.text == "average wait of open tasks: 1h 35m"
    calm = status_embed({})
    assert calm.colour is not None and calm.colour.value == 0x2ECC71
