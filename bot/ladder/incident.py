"""The incident report of the critical step: every step taken, who was notified, when, how.

Posted in the alerts channel (contract Appendix B, critical step "incident report");
at most 2,000 characters (Discord's message limit).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bot.ladder.text import discord_timestamp as ts
from escalation.markup import code_span, inline_text
from escalation.notices import PRIORITY_LABELS, STEP_LABELS, human_duration, late_marker
from escalation.policy import StepKind
from escalation.ports import DeliveryRow, LadderStepRow, LadderTask

__all__ = ["STATUS_ICON", "incident_text"]

#: How a delivery's status is shown in the report.
STATUS_ICON = {
    "sent": "✅",
    "failed": "❌",
    "skipped": "⏭️",
    "unreachable": "🚫",
    "unknown": "❔",
    "cancelled": "✖️",
    "pending": "⏳",
    "claimed": "⏳",
    "reserved": "⏳",  # a bundle's row claimed by an earlier page (bot.store.bundle_claims)
}


def incident_text(
    tracked: LadderTask,
    steps: Sequence[LadderStepRow],
    deliveries: Sequence[DeliveryRow],
    now: datetime,
) -> str:
    """The report of ``tracked`` from its step and delivery rows, as of ``now`` (aware UTC)."""
    task = tracked.task
    lines = [
        f"📋 **Incident report**: **{inline_text(task.title)}** ({code_span(task.id)}), "
        f"{PRIORITY_LABELS.get(task.priority, task.priority.value)}",
        f"Created {ts(task.created_at, 'T')}, SLA deadline {ts(tracked.deadline, 'T')}, "
        f"no decision {human_duration((now - tracked.deadline).total_seconds())} "
        "after the deadline.",
    ]
    for step in steps:
        label = STEP_LABELS.get(StepKind(step.step), step.step)
        lines.append(
            f"**{label}** due {ts(step.due_at, 'T')}, taken {ts(step.taken_at, 'T')}"
            f"{late_marker(step.late_seconds)}:"
        )
        for d in (x for x in deliveries if x.step == step.step):
            when = d.claimed_at or d.finished_at
            at = f" at {ts(when, 'T')}" if when else ""
            via = d.detail.get("via")
            extra = f" (via {via})" if via else ""
            if d.channel in ("incident",):
                continue
            lines.append(
                f"  • {d.channel} → {d.recipient}: {STATUS_ICON.get(d.status, '')} "
                f"{d.status}{at}{extra}"
            )
    if tracked.is_decided:
        who = inline_text(tracked.decided_by or "the factory", 100)
        lines.append(f"Decision: {tracked.decision} by {who}.")
    text = "\n".join(lines)
    return text if len(text) <= 2000 else text[:1990] + "\n…"
