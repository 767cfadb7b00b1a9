"""Factory text in what people read: escaped where Discord renders markdown, plain in a
select, mentions that show the member, and a ``/factory status`` that survives odd numbers.
"""

from __future__ import annotations

import json
from dataclasses import MISSING
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bot.discord.batch_embeds import batch_items, item_embed
from bot.discord.batch_views import batch_view
from bot.discord.embeds import details_embed, task_embed
from bot.discord.listing import (
    pending_items,
    pending_line,
    pipeline_line,
    status_embed,
)
from bot.discord.pager import UNREACHABLE, problem_text
from bot.factory.errors import error_from_response
from bot.store import TrackedTask
from escalation.markup import ZWSP
from escalation.models import Pipeline, Task

NOW = datetime(2026, 11, 21, 11, tzinfo=UTC)
LINK = "[Approve here](https://evil.example/sso)"
MEMBER = 123456789012345678


def tracked(task: Task, **state: object) -> TrackedTask:
    values: dict[str, object] = {  # every field without a default (the rest keep theirs)
        name: None
        for name, spec in TrackedTask.__dataclass_fields__.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    values.update(task=task, deadline=task.created_at + timedelta(hours=24))
    values.update(state)
    return TrackedTask(**values)  # type: ignore[arg-type]


def make_task(**fields: Any) -> Task:
    base: dict[str, Any] = {
        "id": "t-1",
        "title": "Title",
        "priority": "medium",
        "createdAt": datetime(2026, 11, 21, 10, tzinfo=UTC),
        "context": {
            "summary": "s",
            "testResults": {"total": 1, "passed": 1, "failed": 0, "coveragePercent": 90},
        },
    }
    base.update(fields)
    return Task.model_validate(base)


def assert_inert(text: str) -> None:
    """No masked link, no code fence, no spoiler, no ping: the text only reads."""
    assert LINK not in text and "](" not in text.replace("\\](", "")
    assert "```" not in text and "||" not in text
    assert "@everyone" not in text


def test_staging_metric_names_are_escaped_in_the_production_deploy_field() -> None:
    context = {
        "summary": "ship",
        "metrics": {f"staging {LINK} ```": 1.0, "deploysToProduction": 1},
        "testResults": {"total": 1, "passed": 1, "failed": 0, "coveragePercent": 90},
    }
    task = tracked(make_task(stageName="production", context=context))
    assert task.guarded
    fields = {f["name"]: f["value"] for f in task_embed(task).to_dict()["fields"]}
    deploy = fields["🚀 Production deploy"]
    assert "Staging health · staging \\[Approve here\\]" in deploy
    assert_inert(deploy)
    assert deploy.startswith("Approving needs a deploy approver and typing DEPLOY")


def test_a_diff_files_status_is_escaped_and_short_in_details_and_batch_item() -> None:
    diff = {"filesChanged": 1, "files": [{"path": "a.py", "status": f"{LINK} ||``` @everyone"}]}
    task = make_task(context={"summary": "s", "diffSummary": diff})
    item = batch_items([tracked(task)])[0]
    for embed in (details_embed(task), item_embed(item)):
        value = {f.name: f.value for f in embed.fields}["Diff"]
        line = value.splitlines()[1]
        assert line.startswith("• a.py (\\[Approve here\\]")
        assert_inert(line)
        status = line.removeprefix("• a.py (").removesuffix(", +0 −0)")
        assert len(status.replace("\\", "")) <= 20


def test_a_pipelines_status_is_escaped_and_short_in_the_listing() -> None:
    pipeline = Pipeline.model_validate(
        {"id": "p1", "name": "GHL", "status": f"{LINK} @everyone ```"}
    )
    line = pipeline_line(pipeline)
    status = line.rsplit(" · ", 1)[1]
    assert status.startswith("\\[Approve here\\]")
    assert_inert(status)
    assert len(status.replace("\\", "")) <= 30
    plain = Pipeline.model_validate({"id": "p", "name": "n", "status": "active"})
    assert pipeline_line(plain).endswith(" · active")


def test_the_factorys_error_message_is_escaped_and_bounded_in_the_answer() -> None:
    message = f"Session expired: {LINK} ||``` @everyone " + "x" * 2000
    response = httpx.Response(
        400, json={"ok": False, "error": {"code": "BAD_`x`", "message": message}}
    )
    text = UNREACHABLE.format(problem=problem_text(error_from_response(response)))
    assert "Session expired: \\[Approve here\\]" in text
    assert "BAD\\_\\`x\\`" in text
    assert_inert(text)
    assert len(text) < 500
    unreadable = problem_text(RuntimeError(f"{LINK} " + "y" * 1000))
    assert_inert(unreadable)
    assert len(unreadable) < 400


@pytest.mark.parametrize(
    ("body", "field", "shown"),
    [
        ('{"tasks": [1, 2]}', "Open tasks by priority", "pending **0**"),
        ('{"tasks": "n/a", "slaStatus": {"breached": 2}}', "SLA", "🚨 breached **2**"),
        ('{"slaStatus": {"breached": 1e999}}', "SLA", "🚨 breached **0**"),
        ('{"agents": {"error": Infinity, "total": 1e309}}', "Agents", "in error **0** of 0"),
        ('{"agents": {"total": 1e300}}', "Agents", "of 999999999"),
        ('{"tasks": {"byPriority": [3]}}', "Open tasks by priority", "critical: **0**"),
    ],
)
def test_status_shows_a_summary_with_odd_sections_and_counts(
    body: str, field: str, shown: str
) -> None:
    embed = status_embed(json.loads(body))
    value = {f.name: f.value for f in embed.fields}[field]
    assert shown in value
    assert all(len(f.value or "") <= 1024 for f in embed.fields)


@pytest.mark.parametrize("wait", ["NaN", "Infinity", "-Infinity", "1e999", "2e12", "-2e12"])
def test_status_leaves_out_an_average_wait_that_is_no_usable_number(wait: str) -> None:
    embed = status_embed(json.loads(f'{{"tasks": {{"avgWaitTimeMinutes": {wait}, "pending": 4}}}}'))
    assert embed.footer.text is None
    assert "pending **4**" in {f.name: f.value for f in embed.fields}["Open tasks by priority"]


def test_status_says_the_factory_answered_something_unreadable() -> None:
    embed = status_embed([1, 2])
    assert "the factory answered something unreadable" in (embed.description or "").lower()
    assert not embed.fields


def test_pending_shows_the_acknowledging_member_as_a_mention() -> None:
    task = make_task()
    known = tracked(
        task, acknowledged_by_discord_id=MEMBER, acknowledged_by_name="alice", acknowledged_at=NOW
    )
    items = pending_items(
        [task], now=NOW, deadline_for=lambda t: NOW, tracked={task.id: known}, guild_id=1
    )
    line = pending_line(items[0], NOW)
    assert f"👀 <@{MEMBER}>" in line
    named = tracked(task, acknowledged_by_name="@everyone *ops*", acknowledged_at=NOW)
    items = pending_items(
        [task], now=NOW, deadline_for=lambda t: NOW, tracked={task.id: named}, guild_id=1
    )
    assert f"👀 @{ZWSP}everyone \\*ops\\*" in pending_line(items[0], NOW)


def _descriptions(*states: dict[str, Any]) -> list[str]:
    items = batch_items(
        [
            tracked(make_task(id=f"t-{i}", title=f"my_service_{i}", type="review"), **state)
            for i, state in enumerate(states)
        ]
        + [tracked(make_task(id="t-open", title="open", type="review"))]
    )
    view = batch_view("b1-t-0", items)
    assert view is not None
    options = [
        o for row in view.to_components() for c in row["components"] for o in c.get("options", [])
    ]
    return [o.get("description", "") for o in options][: len(states)]


def test_the_pick_select_shows_states_as_plain_text() -> None:
    described = _descriptions(
        {
            "decision": "approved",
            "decided_by_discord_id": MEMBER,
            "decided_at": NOW,
            "decision_notes": "looks_good *ship* @everyone",
        },
        {"acknowledged_by_name": "ops_bot", "acknowledged_at": NOW},
        {
            "acknowledged_by_discord_id": MEMBER,
            "acknowledged_by_name": "dave_k",
            "acknowledged_at": NOW,
        },
        {"decision": "rejected", "decided_by": "x" * 300, "decided_at": NOW},
    )
    assert described[0] == f"low risk, tests pass — ✅ approved: looks_good *ship* @{ZWSP}everyone"
    assert described[1] == "low risk, tests pass — 👀 acknowledged by ops_bot"
    assert described[2] == "low risk, tests pass — 👀 acknowledged by dave_k"
    assert all("\\" not in d and f"<@{MEMBER}" not in d for d in described)
    assert described[3].startswith("low risk, tests pass — ❌ rejected by xxx")
    assert len(described[3]) <= 100
