"""What is stuck and why (``/factory blockers``, reference 002 §4.3 "What's stuck and why?").

Pure: :func:`find_blockers` picks the blocking tasks and failed pipelines from what the factory
listed, :func:`blocker_line` renders one as a listing line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.discord.embeds import truncate
from bot.discord.listing import LINE_MAX, PRIORITY_EMOJI, age_text, jump_link
from bot.store import TrackedTask
from escalation.markup import inline_text
from escalation.models import PRIORITY_ORDER, Pipeline, Priority, Task, TaskStatus

__all__ = [
    "BLOCKER_STATUSES",
    "UNCLAIMED_AFTER",
    "Blocker",
    "block_reason",
    "blocker_line",
    "find_blockers",
]

#: A pending task unclaimed this long is a blocker "Unclaimed for 4h+" (reference 002 §4.3).
UNCLAIMED_AFTER = timedelta(hours=4)
#: Task statuses the blocker query looks at (reference 002 §4.3: pending or claimed).
BLOCKER_STATUSES = frozenset({TaskStatus.PENDING, TaskStatus.CLAIMED})


def _clean(text: str, limit: int) -> str:
    """One-line, truncated, escaped text (:func:`escalation.markup.inline_text`)."""
    return inline_text(text, limit)


@dataclass(frozen=True)
class Blocker:
    """Something stuck, and why (a row of reference 002 §4.3's ``blocked_items``).

    ``kind`` is ``task`` or ``stage``; ``hours_blocked`` counts from the task's creation or the
    failed pipeline's last update.
    """

    kind: str
    entity_id: str
    title: str
    pipeline: str | None
    priority: Priority
    hours_blocked: float
    reason: str
    link: str | None = None

    def sort_key(self) -> tuple[int, float, str]:
        """Reference 002 §4.3: by priority (critical first), then hours blocked, longest first."""
        return (PRIORITY_ORDER[self.priority], -self.hours_blocked, self.entity_id)


def block_reason(task: Task, *, now: datetime, deadline: datetime) -> str:
    """Why a task blocks (reference 002 §4.3 ``block_reason``), first matching rule wins.

    ``SLA breached`` (flagged by the factory, or past ``deadline``), ``Unclaimed for 4h+``
    (still pending four hours after creation), ``Unassigned`` (no assignee), else
    ``Awaiting decision``.
    """
    if task.sla_breached or deadline <= now:
        return "SLA breached"
    if task.status is TaskStatus.PENDING and task.created_at < now - UNCLAIMED_AFTER:
        return "Unclaimed for 4h+"
    if task.assignee_id is None:
        return "Unassigned"
    return "Awaiting decision"


def find_blockers(
    tasks: Iterable[Task],
    pipelines: Iterable[Pipeline],
    *,
    now: datetime,
    deadline_for: Callable[[Task], datetime],
    tracked: Mapping[str, TrackedTask] | None = None,
    guild_id: int | None = None,
) -> list[Blocker]:
    """What is stuck and why, most urgent first (reference 002 §4.3).

    Tasks: status pending or claimed and either ``blocksStageAdvance`` or past their SLA
    (a breached task is stuck even when it does not gate a stage). Pipelines: status
    ``failed`` ("Stage failed — requires intervention"). Ordered by priority, then hours
    blocked (longest first).

    Parameters
    ----------
    tasks, pipelines:
        What the factory listed.
    now:
        Current aware UTC time.
    deadline_for:
        The SLA deadline of a task (``Bridge.deadline_for``).
    tracked, guild_id:
        The store's view, for jump links to the task messages (optional).
    """
    tracked = tracked or {}
    found: list[Blocker] = []
    for task in tasks:
        if task.status not in BLOCKER_STATUSES or task.decision is not None:
            continue
        known = tracked.get(task.id)
        if known is not None and known.is_decided:
            continue
        deadline = known.deadline if known is not None else deadline_for(task)
        breached = task.sla_breached or deadline <= now
        if not (task.blocks_stage_advance or breached):
            continue
        link = (
            jump_link(guild_id, known.channel_id, known.message_id)
            if known is not None and guild_id is not None
            else None
        )
        found.append(
            Blocker(
                kind="task",
                entity_id=task.id,
                title=task.title,
                pipeline=task.pipeline_id,
                priority=task.priority,
                hours_blocked=max(0.0, (now - task.created_at).total_seconds() / 3600),
                reason=block_reason(task, now=now, deadline=deadline),
                link=link,
            )
        )
    for pipeline in pipelines:
        if pipeline.status != "failed":
            continue
        since = pipeline.updated_at or pipeline.created_at or now
        stage = pipeline.current_stage.value if pipeline.current_stage else "a stage"
        found.append(
            Blocker(
                kind="stage",
                entity_id=pipeline.id,
                title=f"{pipeline.name} — {stage} failed",
                pipeline=pipeline.name,
                priority=pipeline.priority,
                hours_blocked=max(0.0, (now - since).total_seconds() / 3600),
                reason="Stage failed — requires intervention",
            )
        )
    return sorted(found, key=Blocker.sort_key)


def blocker_line(blocker: Blocker) -> str:
    """``🔴 **Title** · SLA breached · blocked 5h 10m · pipeline x · [jump](…)``."""
    parts = [
        f"{PRIORITY_EMOJI[blocker.priority]} **{_clean(blocker.title, 90)}**",
        f"**{blocker.reason}**",
        f"blocked {age_text(timedelta(hours=blocker.hours_blocked))}",
    ]
    if blocker.kind == "task" and blocker.pipeline:
        parts.append(f"pipeline {_clean(blocker.pipeline, 60)}")
    if blocker.link:
        parts.append(f"[jump]({blocker.link})")
    elif blocker.kind == "task":
        parts.append(f"`{blocker.entity_id}`")
    return truncate(" · ".join(parts), LINE_MAX)
