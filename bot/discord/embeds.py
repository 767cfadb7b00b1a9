"""Pure renderers: what a task looks like in Discord.

Nothing here talks to Discord; each function turns tracked state into a ``discord.Embed`` (or
text) that fits Discord's limits. Long values are truncated with "…", never rejected
(Discord: title 256, description 4096, field name 256, field value 1024, footer 2048,
25 fields, 6000 characters per message).
"""

from __future__ import annotations

import discord

from bot.discord.limits import (
    DESCRIPTION_MAX,
    FIELD_VALUE_MAX,
    FOOTER_MAX,
    TITLE_MAX,
    fit_embed,
    truncate,
)
from bot.ladder.text import discord_timestamp
from bot.outcomes import ack_channel
from bot.pipelines import stage_text
from bot.store import GONE, TrackedTask
from escalation.markup import escape_text, inline_text
from escalation.models import Priority, Task, TaskType, TestResults
from escalation.notices import PRIORITY_LABELS, NextStep
from escalation.task_kinds import ACTION_TITLES, decision_options

__all__ = [
    "DECISION_LABELS",
    "PRIORITY_COLOURS",
    "PRIORITY_LABELS",
    "NextStep",
    "approvals_line",
    "deploy_checklist",
    "details_embed",
    "discord_timestamp",
    "embed_length",
    "fit_embed",
    "format_coverage",
    "format_metrics",
    "format_test_results",
    "task_embed",
    "truncate",
]

#: Embed colour per priority (reference 002 §6.2 uses orange for a pending approval).
PRIORITY_COLOURS: dict[Priority, int] = {
    Priority.CRITICAL: 0xE74C3C,
    Priority.HIGH: 0xFFA500,
    Priority.MEDIUM: 0xF1C40F,
    Priority.LOW: 0x3498DB,
}


#: How a confirmed decision is shown: (emoji + verb, embed colour).
DECISION_LABELS: dict[str, tuple[str, int]] = {
    "approved": ("✅ Approved", 0x2ECC71),
    "rejected": ("❌ Rejected", 0x992D22),
    "deferred": ("⏸️ Deferred", 0x95A5A6),
    "escalated": ("⬆️ Escalated", 0x9B59B6),
    GONE: ("🗑️ No longer at the factory", 0x95A5A6),
}


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


#: How many ``context.metrics`` entries the task message shows (the rest are counted).
METRICS_SHOWN = 12


def _title(task: Task) -> str:
    """What the task asks for, by type (contract §1.4 ``TaskType``), then its title:
    "🔔 Approval Required" for ``approval`` and ``review``, "🗳️ Decision Required",
    "🛠️ Manual action required", "🔧 Fix required"."""
    if task.type in ACTION_TITLES:
        prefix = ACTION_TITLES[task.type]
    elif task.type is TaskType.DECISION:
        prefix = "🗳️ Decision Required"
    else:
        prefix = "🔔 Approval Required"
    return truncate(f"{prefix}: {escape_text(task.title)}", TITLE_MAX)


def format_metrics(metrics: dict[str, float]) -> str:
    """``context.metrics`` compactly: "errorRate 0.02 · p95Ms 180", sorted by name, at most
    :data:`METRICS_SHOWN` entries then "…and N more"; "" when there are none."""
    items = sorted(metrics.items())
    parts = [
        f"{escape_text(truncate(name, 40))} {value:g}" for name, value in items[:METRICS_SHOWN]
    ]
    if len(items) > METRICS_SHOWN:
        parts.append(f"…and {len(items) - METRICS_SHOWN} more")
    return " · ".join(parts)


def _kind_fields(embed: discord.Embed, task: Task, *, decided: bool) -> None:
    """The fields a task's type and context add: Modal type, Metrics, and a ``decision``
    task's Options (or why there are none, and which were left out)."""
    if task.context.modal_type:
        embed.add_field(
            name="Modal type", value=truncate(escape_text(task.context.modal_type), 100)
        )
    metrics = format_metrics(task.context.metrics)
    if metrics:
        embed.add_field(name="Metrics", value=truncate(metrics, FIELD_VALUE_MAX), inline=False)
    if task.type is not TaskType.DECISION or decided:
        return
    found = decision_options(task)
    if found.options:
        lines = [
            f"• **{escape_text(o.label)}**"
            + (f" — {escape_text(o.description)}" if o.description else "")
            for o in found.options
        ]
    else:
        lines = ["⚠️ The factory gave no options to choose from: approve or reject instead."]
    if found.skipped:
        skipped = "; ".join(escape_text(reason) for reason in found.skipped)  # factory text
        lines.append(f"⚠️ {len(found.skipped)} option(s) left out: {skipped}")
    embed.add_field(name="Options", value=truncate("\n".join(lines), FIELD_VALUE_MAX), inline=False)


def deploy_checklist(task: Task, min_coverage_percent: float = 80.0) -> str:
    """The deploy checklist a guarded task carries: tests, coverage and staging health.

    Staging health is every ``context.metrics`` entry whose name starts with ``staging``
    (e.g. ``stagingErrorRate``, ``stagingHealthy``), when the factory gives any. A name is
    factory text, so it is cut and escaped as in :func:`format_metrics` (Discord renders
    markdown and masked links in embed field values: "Markdown Text 101",
    https://support.discord.com/hc/en-us/articles/210298617). Returns "—" when the task carries
    none of them.
    """
    results = task.context.test_results
    lines: list[str] = []
    if results is not None:
        lines.append(f"Tests: {format_test_results(results)}")
        lines.append(f"Coverage: {format_coverage(results, min_coverage_percent)}")
    for name, value in sorted(task.context.metrics.items()):
        if name.lower().startswith("staging"):
            lines.append(f"Staging health · {escape_text(truncate(name, 40))}: {value:g}")
    return "\n".join(lines) or "—"


def approvals_line(tracked: TrackedTask, required: int) -> str:
    """ "✅ 1 of 2 approvals: <@alice> — waiting for a second deploy approver" (two-person rule).

    ``required`` is the number of distinct deploy approvers the task needs
    (:func:`escalation.deploy_guard.approvals_required`).
    """
    got = tracked.deploy_approvals
    who = ", ".join(f"<@{a.discord_user_id}>" for a in got) or "nobody yet"
    line = f"✅ {len(got)} of {required} approvals: {who}"
    missing = required - len(got)
    if missing == 1:
        line += " — waiting for a second deploy approver" if required == 2 else ""
        line += " — waiting for one more deploy approver" if required != 2 else ""
    elif missing > 1:
        line += f" — waiting for {missing} more deploy approvers"
    return line


def task_embed(
    tracked: TrackedTask,
    *,
    min_coverage_percent: float = 80.0,
    next_step: NextStep | None = None,
    sla_breached: bool = False,
    notices: tuple[str, ...] = (),
    required_approvals: int = 1,
    pipeline_name: str | None = None,
) -> discord.Embed:
    """The task message's embed (reference 002 §6.2), brought up to date with its state.

    Fields: Pipeline (``pipeline_name`` when known, else the id), Stage (a deploy's transition,
    :func:`bot.pipelines.stage_text`), Priority, Tests, Coverage, SLA Deadline (``<t:…:R>``); the
    description is the context summary. A confirmed decision adds a "Decision" field and turns
    the colour; acknowledgement, snooze, SLA breach and the next escalation step are shown as
    fields too. ``notices`` are extra lines (e.g. "recording decision…") for the footer.

    A guarded task (a possible production deploy, :mod:`escalation.deploy_guard`) carries the
    "🚀 Production deploy" marker above its title and shows its deploy checklist and, while undecided, the deploy
    approvals collected of ``required_approvals`` (two-person rule).
    """
    task = tracked.task
    decided = tracked.decision is not None
    colour = PRIORITY_COLOURS[task.priority]
    if decided:
        colour = DECISION_LABELS.get(tracked.decision or "", ("", colour))[1]
    embed = discord.Embed(
        title=_title(task),
        description=truncate(
            escape_text(task.context.summary or task.description or ""), DESCRIPTION_MAX
        )
        or None,
        colour=colour,
    )
    results = task.context.test_results
    stage = stage_text(task, tracked.approval)  # a deploy: "staging → production"
    embed.add_field(
        name="Pipeline",
        value=truncate(escape_text(pipeline_name or task.pipeline_id or "—"), FIELD_VALUE_MAX),
    )
    embed.add_field(name="Stage", value=stage)
    embed.add_field(name="Priority", value=PRIORITY_LABELS[task.priority])
    embed.add_field(name="Tests", value=format_test_results(results))
    embed.add_field(name="Coverage", value=format_coverage(results, min_coverage_percent))
    deadline_value = discord_timestamp(tracked.deadline)
    if sla_breached and not decided:
        deadline_value = f"🚨 SLA breached {deadline_value}"
    embed.add_field(name="SLA Deadline", value=deadline_value)
    _kind_fields(embed, task, decided=decided)
    if tracked.guarded:
        embed.set_author(name="🚀 Production deploy")  # shown above the title
        reasons = "; ".join(signal.value for signal in tracked.guard_signals)
        embed.add_field(
            name="🚀 Production deploy",
            value=truncate(
                f"Approving needs a deploy approver and typing DEPLOY ({reasons}).\n"
                + deploy_checklist(task, min_coverage_percent),
                FIELD_VALUE_MAX,
            ),
            inline=False,
        )
        if not decided and (required_approvals > 1 or tracked.deploy_approvals):
            embed.add_field(
                name="Approvals",
                value=truncate(approvals_line(tracked, required_approvals), FIELD_VALUE_MAX),
                inline=False,
            )
    if decided:
        label = DECISION_LABELS.get(tracked.decision or "", (tracked.decision or "", 0))[0]
        who: str = (
            f"<@{tracked.decided_by_discord_id}>"
            if tracked.decided_by_discord_id
            else escape_text(tracked.decided_by or "the factory")
        )
        if tracked.decision == "approved" and len(tracked.deploy_approvals) > 1:
            who = ", ".join(f"<@{a.discord_user_id}>" for a in tracked.deploy_approvals)
        when = f" · {discord_timestamp(tracked.decided_at, 'f')}" if tracked.decided_at else ""
        value = f"{label}{when}" if tracked.decision == GONE else f"{label} by {who}{when}"
        chosen = task.decision_data.get("option")
        if isinstance(chosen, dict) and isinstance(chosen.get("label"), str):
            value += f"\nChosen: **{escape_text(truncate(chosen['label'], 100))}**"
        if tracked.decision_notes:
            value += f"\n> {escape_text(tracked.decision_notes)}"
        embed.add_field(name="Decision", value=truncate(value, FIELD_VALUE_MAX), inline=False)
    else:
        if tracked.acknowledged_by_discord_id or tracked.acknowledged_by_name:
            ack_by = (
                f"<@{tracked.acknowledged_by_discord_id}>"
                + ack_channel(tracked.acknowledged_by_name)  # " via SMS" (README "Phone")
                if tracked.acknowledged_by_discord_id
                else escape_text(tracked.acknowledged_by_name or "")
            )
            embed.add_field(name="Status", value=f"👀 acknowledged by {ack_by}", inline=False)
        if tracked.snoozed_until is not None:
            embed.add_field(
                name="Snoozed",
                value=f"💤 until {discord_timestamp(tracked.snoozed_until, 'f')}"
                + (
                    f" by {escape_text(tracked.snoozed_by_name)}" if tracked.snoozed_by_name else ""
                ),
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


def details_embed(task: Task) -> discord.Embed:
    """An ephemeral view of a task's context: summary, details, test failures, diff summary.

    Every text the factory gives (a diff file's path and status included) is escaped and
    bounded: Discord renders markdown in embed field values (``escalation.markup``).
    """
    embed = discord.Embed(
        title=truncate(f"📋 {escape_text(task.title)}", TITLE_MAX),
        description=truncate(
            escape_text(
                "\n\n".join(p for p in (task.context.summary, task.context.details or "") if p)
            )
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
                f"• {escape_text(truncate(f.test_name, 80))} — {escape_text(truncate(f.error, 120))}"
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
            f"• {escape_text(truncate(f.path, 100))} ({inline_text(f.status, 20)},"
            f" +{f.insertions} −{f.deletions})"
            for f in diff.files[:10]
        ]
        if len(diff.files) > 10:
            lines.append(f"…and {len(diff.files) - 10} more")
        embed.add_field(
            name="Diff", value=truncate("\n".join(lines), FIELD_VALUE_MAX), inline=False
        )
    embed.set_footer(text=f"task {task.id}")
    return fit_embed(embed)
