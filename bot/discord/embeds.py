"""Pure renderers: what a task looks like in Discord.

Nothing here talks to Discord; each function turns tracked state into a ``discord.Embed`` (or
text) that fits Discord's limits. Long values are truncated with "…", never rejected
(Discord: title 256, description 4096, field name 256, field value 1024, footer 2048,
25 fields, 6000 characters per message).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import discord

from bot.store import TrackedTask
from escalation.models import Priority, Task, TestResults

__all__ = [
    "DECISION_LABELS",
    "PRIORITY_COLOURS",
    "PRIORITY_LABELS",
    "NextStep",
    "details_embed",
    "discord_timestamp",
    "embed_length",
    "fit_embed",
    "format_coverage",
    "format_test_results",
    "task_embed",
    "truncate",
]

TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000

#: Embed colour per priority (reference 002 §6.2 uses orange for a pending approval).
PRIORITY_COLOURS: dict[Priority, int] = {
    Priority.CRITICAL: 0xE74C3C,
    Priority.HIGH: 0xFFA500,
    Priority.MEDIUM: 0xF1C40F,
    Priority.LOW: 0x3498DB,
}

PRIORITY_LABELS: dict[Priority, str] = {
    Priority.CRITICAL: "🔴 Critical",
    Priority.HIGH: "🟠 High",
    Priority.MEDIUM: "🟡 Medium",
    Priority.LOW: "🔵 Low",
}

#: How a confirmed decision is shown: (emoji + verb, embed colour).
DECISION_LABELS: dict[str, tuple[str, int]] = {
    "approved": ("✅ Approved", 0x2ECC71),
    "rejected": ("❌ Rejected", 0x992D22),
    "deferred": ("⏸️ Deferred", 0x95A5A6),
    "escalated": ("⬆️ Escalated", 0x9B59B6),
}


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in "…" when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def discord_timestamp(at: datetime, style: str = "R") -> str:
    """Discord timestamp markup ``<t:unix:style>`` (``R`` relative, ``f`` date and time)."""
    return f"<t:{int(at.timestamp())}:{style}>"


def format_test_results(results: TestResults | None) -> str:
    """ "✅ 47/47 passing", "❌ 42/47 failing", "⚠️ 46/47 passing, 1 skipped" or "—"."""
    if results is None:
        return "—"
    if results.failed:
        return f"❌ {results.failed}/{results.total} failing"
    if results.skipped:
        return f"⚠️ {results.passed}/{results.total} passing, {results.skipped} skipped"
    return f"✅ {results.passed}/{results.total} passing"


def format_coverage(results: TestResults | None, min_percent: float = 80.0) -> str:
    """ "✅ 94%" at or above ``min_percent`` (``BATCH_MIN_COVERAGE_PERCENT``), else "⚠️ 65%"."""
    if results is None:
        return "—"
    mark = "✅" if results.coverage_percent >= min_percent else "⚠️"
    return f"{mark} {results.coverage_percent:g}%"


@dataclass(frozen=True)
class NextStep:
    """The next escalation step shown on the message: a label and when (aware UTC).

    ``at`` is ``None`` when no step remains; ``taken`` lists the steps already taken, one
    line each (with "(late by …)" when a step was taken late, e.g. after a restart).
    """

    label: str
    at: datetime | None
    taken: tuple[str, ...] = ()


def _title(task: Task) -> str:
    return truncate(f"🔔 Approval Required: {task.title}", TITLE_MAX)


def task_embed(
    tracked: TrackedTask,
    *,
    min_coverage_percent: float = 80.0,
    next_step: NextStep | None = None,
    sla_breached: bool = False,
    notices: tuple[str, ...] = (),
) -> discord.Embed:
    """The task message's embed (reference 002 §6.2), brought up to date with its state.

    Fields: Pipeline, Stage, Priority, Tests, Coverage, SLA Deadline (``<t:…:R>``); the
    description is the context summary. A confirmed decision adds a "Decision" field and turns
    the colour; acknowledgement, snooze, SLA breach and the next escalation step are shown as
    fields too. ``notices`` are extra lines (e.g. "recording decision…") for the footer.
    """
    task = tracked.task
    decided = tracked.decision is not None
    colour = PRIORITY_COLOURS[task.priority]
    if decided:
        colour = DECISION_LABELS.get(tracked.decision or "", ("", colour))[1]
    embed = discord.Embed(
        title=_title(task),
        description=truncate(task.context.summary or task.description or "", DESCRIPTION_MAX)
        or None,
        colour=colour,
    )
    results = task.context.test_results
    stage = task.stage_name.value if task.stage_name else "—"
    embed.add_field(name="Pipeline", value=truncate(task.pipeline_id or "—", FIELD_VALUE_MAX))
    embed.add_field(name="Stage", value=stage)
    embed.add_field(name="Priority", value=PRIORITY_LABELS[task.priority])
    embed.add_field(name="Tests", value=format_test_results(results))
    embed.add_field(name="Coverage", value=format_coverage(results, min_coverage_percent))
    deadline_value = discord_timestamp(tracked.deadline)
    if sla_breached and not decided:
        deadline_value = f"🚨 SLA breached {deadline_value}"
    embed.add_field(name="SLA Deadline", value=deadline_value)
    if decided:
        label = DECISION_LABELS.get(tracked.decision or "", (tracked.decision or "", 0))[0]
        who: str = (
            f"<@{tracked.decided_by_discord_id}>"
            if tracked.decided_by_discord_id
            else (tracked.decided_by or "the factory")
        )
        when = f" · {discord_timestamp(tracked.decided_at, 'f')}" if tracked.decided_at else ""
        value = f"{label} by {who}{when}"
        if tracked.decision_notes:
            value += f"\n> {tracked.decision_notes}"
        embed.add_field(name="Decision", value=truncate(value, FIELD_VALUE_MAX), inline=False)
    else:
        if tracked.acknowledged_by_discord_id or tracked.acknowledged_by_name:
            ack_by = (
                f"<@{tracked.acknowledged_by_discord_id}>"
                if tracked.acknowledged_by_discord_id
                else tracked.acknowledged_by_name
            )
            embed.add_field(name="Status", value=f"👀 acknowledged by {ack_by}", inline=False)
        if tracked.snoozed_until is not None:
            embed.add_field(
                name="Snoozed",
                value=f"💤 until {discord_timestamp(tracked.snoozed_until, 'f')}"
                + (f" by {tracked.snoozed_by_name}" if tracked.snoozed_by_name else ""),
                inline=False,
            )
        if next_step is not None:
            when = f" {discord_timestamp(next_step.at)}" if next_step.at is not None else ""
            embed.add_field(
                name="Next escalation",
                value=truncate(f"{next_step.label}{when}", FIELD_VALUE_MAX),
                inline=False,
            )
            if next_step.taken:
                embed.add_field(
                    name="Escalation so far",
                    value=truncate("\n".join(next_step.taken), FIELD_VALUE_MAX),
                    inline=False,
                )
    footer = " · ".join((f"task {task.id}", *notices))
    embed.set_footer(text=truncate(footer, FOOTER_MAX))
    return fit_embed(embed)


def embed_length(embed: discord.Embed) -> int:
    """Characters Discord counts toward its 6000 per-message embed limit."""
    return len(embed)


def fit_embed(embed: discord.Embed, limit: int = EMBED_TOTAL_MAX) -> discord.Embed:
    """Shorten the description (then the longest fields) until the embed fits ``limit``.

    Discord refuses a message whose embeds total more than 6000 characters (title,
    description, field names and values, footer, author); we truncate instead.
    """
    excess = len(embed) - limit
    if excess > 0 and embed.description:
        keep = max(0, len(embed.description) - excess)
        embed.description = truncate(embed.description, keep) if keep else None
    while len(embed) > limit and embed.fields:
        index = max(range(len(embed.fields)), key=lambda i: len(embed.fields[i].value or ""))
        field = embed.fields[index]
        value = field.value or ""
        keep = max(1, len(value) - (len(embed) - limit))
        embed.set_field_at(
            index, name=field.name, value=truncate(value, keep), inline=bool(field.inline)
        )
        if keep == 1:
            break
    return embed


def details_embed(task: Task) -> discord.Embed:
    """An ephemeral view of a task's context: summary, details, test failures, diff summary."""
    embed = discord.Embed(
        title=truncate(f"📋 {task.title}", TITLE_MAX),
        description=truncate(
            "\n\n".join(p for p in (task.context.summary, task.context.details or "") if p)
            or "No summary given.",
            DESCRIPTION_MAX,
        ),
        colour=PRIORITY_COLOURS[task.priority],
    )
    results = task.context.test_results
    if results is not None:
        embed.add_field(name="Tests", value=format_test_results(results))
        embed.add_field(name="Coverage", value=f"{results.coverage_percent:g}%")
        if results.failure_details:
            lines = [
                f"• `{truncate(f.test_name, 80)}` — {truncate(f.error, 120)}"
                for f in results.failure_details[:10]
            ]
            more = len(results.failure_details) - 10
            if more > 0:
                lines.append(f"…and {more} more")
            embed.add_field(
                name="Failures", value=truncate("\n".join(lines), FIELD_VALUE_MAX), inline=False
            )
    diff = task.context.diff_summary
    if diff is not None:
        lines = [f"{diff.files_changed} files, +{diff.insertions} −{diff.deletions}"]
        lines += [
            f"• {truncate(f.path, 100)} ({f.status}, +{f.insertions} −{f.deletions})"
            for f in diff.files[:10]
        ]
        if len(diff.files) > 10:
            lines.append(f"…and {len(diff.files) - 10} more")
        embed.add_field(
            name="Diff", value=truncate("\n".join(lines), FIELD_VALUE_MAX), inline=False
        )
    embed.set_footer(text=f"task {task.id}")
    return fit_embed(embed)
