"""The task embed: reference 002 §6.2 fields; long values truncated to Discord's limits."""

from __future__ import annotations

from dataclasses import MISSING
from datetime import UTC, datetime, timedelta

from bot.discord.embeds import details_embed, format_test_results, task_embed, truncate
from bot.store import TrackedTask
from escalation.models import Task


def tracked(task: Task, **state: object) -> TrackedTask:
    values: dict[str, object] = {  # every field without a default (the rest keep theirs)
        name: None
        for name, spec in TrackedTask.__dataclass_fields__.items()
        if spec.default is MISSING and spec.default_factory is MISSING
    }
    values.update(task=task, deadline=task.created_at + timedelta(hours=1))
    values.update(state)
    return TrackedTask(**values)  # type: ignore[arg-type]


def make_task(**fields: object) -> Task:
    base = {
        "id": "t-1",
        "title": "GHL MCP Server → Production",
        "priority": "critical",
        "stageName": "production",
        "pipelineId": "ghl-mcp-server",
        "createdAt": datetime(2026, 11, 21, 10, tzinfo=UTC),
        "context": {
            "summary": "Ship it.",
            "testResults": {
                "total": 47,
                "passed": 47,
                "failed": 0,
                "skipped": 0,
                "coveragePercent": 94,
            },
        },
    }
    base.update(fields)
    return Task.model_validate(base)


def test_fields_follow_the_reference_embed() -> None:
    embed = task_embed(tracked(make_task())).to_dict()
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Tests"] == "✅ 47/47 passing"
    assert fields["Coverage"] == "✅ 94%"
    assert fields["Priority"] == "🔴 Critical"
    assert (
        fields["SLA Deadline"] == f"<t:{int(datetime(2026, 11, 21, 11, tzinfo=UTC).timestamp())}:R>"
    )


def test_long_values_are_truncated_never_rejected() -> None:
    task = make_task(title="t" * 500, context={"summary": "s" * 10000}, pipelineId="p" * 2000)
    embed = task_embed(
        tracked(task, decision="rejected", decision_notes="n" * 5000, decided_by="x")
    ).to_dict()
    assert len(embed["title"]) <= 256 and embed["title"].endswith("…")
    assert len(embed["description"]) <= 4096
    assert all(len(f["value"]) <= 1024 for f in embed["fields"])
    total = (
        len(embed["title"])
        + len(embed["description"])
        + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
        + len(embed["footer"]["text"])
    )
    assert total <= 6000


def test_decision_is_shown_with_who_and_buttons_state() -> None:
    decided = tracked(
        make_task(), decision="approved", decided_by_discord_id=42, decided_at=datetime.now(UTC)
    )
    fields = {f["name"]: f["value"] for f in task_embed(decided).to_dict()["fields"]}
    assert fields["Decision"].startswith("✅ Approved by <@42>")


def test_failures_and_details_view() -> None:
    task = make_task(
        context={
            "summary": "ghl",
            "testResults": {
                "total": 120,
                "passed": 78,
                "failed": 42,
                "skipped": 0,
                "coveragePercent": 71,
                "failureDetails": [{"testName": f"test_{i}", "error": "boom"} for i in range(42)],
            },
        }
    )
    assert format_test_results(task.context.test_results) == "❌ 42/120 failing"
    fields = {f["name"]: f["value"] for f in details_embed(task).to_dict()["fields"]}
    assert "…and 32 more" in fields["Failures"]


def test_truncate() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcd", 3) == "ab…"


def test_an_option_left_out_cannot_smuggle_a_link_into_the_embed() -> None:
    """Discord renders masked links in embed fields: a factory option value given twice is
    named in the "left out" line, escaped like every other factory text."""
    evil = "[Approve](https://evil.example)"
    task = make_task(
        type="decision",
        stageName="review",
        context={"summary": "pick", "modalConfig": {"options": [evil, evil]}},
    )
    fields = {f["name"]: f["value"] for f in task_embed(tracked(task)).to_dict()["fields"]}
    left_out = fields["Options"].split("\n")[-1]
    assert "given twice" in left_out
    assert "[Approve](https://evil.example)" not in left_out
    assert "\\[Approve\\]" in left_out
