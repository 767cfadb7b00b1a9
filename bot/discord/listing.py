"""Pure renderers for the ``/factory`` read commands: status, pending, pipelines, history.

Nothing here talks to Discord or the factory: each function turns data the command fetched into
lines, pages or a ``discord.Embed`` that fits Discord's limits (content 2000, embed description
4096, 25 fields, 6000 characters per message). Long lists are split into pages; a single value
that would not fit is truncated with "…and N more", never rejected.

Blockers have their own module, :mod:`bot.discord.blockers`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import discord

from bot.discord.embeds import PRIORITY_COLOURS, discord_timestamp, truncate
from bot.store import AuditRecord, TrackedTask
from escalation.markup import inline_text
from escalation.models import PRIORITY_ORDER, Pipeline, PipelineStage, Priority, Task, TaskStatus

__all__ = [
    "COUNT_MAX",
    "DESCRIPTION_BUDGET",
    "LINE_MAX",
    "PAGE_LINES",
    "PRIORITY_EMOJI",
    "SUMMARY_UNREADABLE",
    "PendingItem",
    "age_text",
    "history_line",
    "jump_link",
    "page_embed",
    "paginate",
    "pending_items",
    "pending_line",
    "pipeline_line",
    "priority_colour",
    "sort_pipelines",
    "stage_progress",
    "status_embed",
    "truncate_lines",
]

#: Entries per page of a listing (keeps an ephemeral answer readable on a phone).
PAGE_LINES = 10
#: Characters of a page's description (Discord: embed description ≤ 4096; room for "…").
DESCRIPTION_BUDGET = 3900
#: Line length cap for one entry (so that ten entries always fit a page).
LINE_MAX = 380

PRIORITY_EMOJI: dict[Priority, str] = {
    Priority.CRITICAL: "🔴",
    Priority.HIGH: "🟠",
    Priority.MEDIUM: "🟡",
    Priority.LOW: "🔵",
}

_STAGES: tuple[PipelineStage, ...] = tuple(PipelineStage)
_PIPELINE_STATUS_ORDER = {"failed": 0, "active": 1, "paused": 2, "completed": 3, "archived": 4}
_PIPELINE_STATUS_EMOJI = {
    "failed": "❌",
    "active": "▶️",
    "paused": "⏸️",
    "completed": "✅",
    "archived": "🗄️",
}


# ---------------------------------------------------------------------------------- basics
def jump_link(guild_id: int, channel_id: int | None, message_id: int | None) -> str | None:
    """``https://discord.com/channels/{guild}/{channel}/{message}``, or ``None`` when unknown."""
    if channel_id is None or message_id is None:
        return None
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def age_text(delta: timedelta) -> str:
    """A short age: ``"<1m"``, ``"12m"``, ``"3h 05m"``, ``"2d 4h"`` (negative counts as 0)."""
    seconds = max(0, int(delta.total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 1:
        return "<1m"
    if hours < 1:
        return f"{minutes}m"
    if days < 1:
        return f"{hours}h {minutes % 60:02d}m"
    return f"{days}d {hours % 24}h"


def _clean(text: str, limit: int) -> str:
    """One-line, truncated text for a list entry, escaped (:func:`escalation.markup.inline_text`:
    no markdown, no pings)."""
    return inline_text(text, limit)


def truncate_lines(lines: Sequence[str], max_chars: int, *, separator: str = "\n") -> str:
    """Join as many ``lines`` as fit in ``max_chars``, ending with "…and N more" when cut.

    Parameters
    ----------
    lines:
        The entries, in display order.
    max_chars:
        Hard limit of the result (e.g. 1024 for an embed field value, 2000 for content).

    Returns
    -------
    str
        The joined text; never longer than ``max_chars``.
    """
    text = separator.join(lines)
    if len(text) <= max_chars:
        return text
    for keep in range(len(lines) - 1, 0, -1):
        candidate = f"{separator.join(lines[:keep])}{separator}…and {len(lines) - keep} more"
        if len(candidate) <= max_chars:
            return candidate
    return truncate(f"…and {len(lines)} more", max_chars)


def paginate(
    lines: Sequence[str], *, per_page: int = PAGE_LINES, max_chars: int = DESCRIPTION_BUDGET
) -> list[list[str]]:
    """Split ``lines`` into pages of at most ``per_page`` lines and ``max_chars`` characters.

    A single line longer than ``max_chars`` is truncated with "…". An empty list gives one
    empty page (so page 1/1 can say "nothing here").
    """
    pages: list[list[str]] = []
    page: list[str] = []
    size = 0
    for raw in lines:
        line = truncate(raw, max_chars)
        cost = len(line) + (1 if page else 0)
        if page and (len(page) >= per_page or size + cost > max_chars):
            pages.append(page)
            page, size, cost = [], 0, len(line)
        page.append(line)
        size += cost
    if page or not pages:
        pages.append(page)
    return pages


def page_embed(
    title: str,
    pages: Sequence[Sequence[str]],
    page: int,
    *,
    total: int,
    empty: str,
    colour: int = 0x5865F2,
    note: str | None = None,
) -> discord.Embed:
    """The embed of page ``page`` (0-based, clamped) of a listing.

    ``total`` is the number of entries over all pages (shown in the title); ``empty`` is the
    description when there are none; ``note`` goes to the footer (e.g. a fallback warning).
    """
    index = min(max(page, 0), len(pages) - 1)
    lines = pages[index]
    description = "\n".join(lines) if lines else empty
    embed = discord.Embed(
        title=truncate(f"{title} ({total})", 256),
        description=truncate(description, 4096),
        colour=colour,
    )
    footer = f"page {index + 1}/{len(pages)}" if len(pages) > 1 else ""
    if note:
        footer = f"{footer} · {note}" if footer else note
    if footer:
        embed.set_footer(text=truncate(footer, 2048))
    return embed


# ---------------------------------------------------------------------------------- pending
@dataclass(frozen=True)
class PendingItem:
    """One open task in ``/factory pending``.

    ``deadline`` and ``created_at`` are aware UTC; ``link`` is the jump link to its message.
    Who acknowledged it is ``acknowledged_by_id`` (a Discord member, shown as a mention) or
    else ``acknowledged_by`` (a name: factory or form text, shown escaped).
    """

    task_id: str
    title: str
    priority: Priority
    status: TaskStatus
    created_at: datetime
    deadline: datetime
    breached: bool
    link: str | None = None
    acknowledged_by: str | None = None
    acknowledged_by_id: int | None = None

    def sort_key(self) -> tuple[int, float, int, str]:
        """SLA urgency: breached first, then soonest deadline, then priority."""
        return (
            0 if self.breached else 1,
            self.deadline.timestamp(),
            PRIORITY_ORDER[self.priority],
            self.task_id,
        )


def pending_items(
    tasks: Iterable[Task],
    *,
    now: datetime,
    deadline_for: Callable[[Task], datetime],
    tracked: Mapping[str, TrackedTask],
    guild_id: int,
) -> list[PendingItem]:
    """Open tasks as :class:`PendingItem` sorted by SLA urgency (breached first, then deadline).

    Parameters
    ----------
    tasks:
        Tasks from the factory (or the store); decided ones are left out.
    now:
        Current aware UTC time.
    deadline_for:
        The SLA deadline of a task (``Bridge.deadline_for``).
    tracked:
        What the store knows, by task id: gives the message (jump link), the acknowledgement
        and a decision the factory list may not show yet.
    guild_id:
        ``DISCORD_GUILD_ID`` for the jump links.
    """
    items: list[PendingItem] = []
    for task in tasks:
        known = tracked.get(task.id)
        if not task.is_open or (known is not None and known.is_decided):
            continue
        deadline = known.deadline if known is not None else deadline_for(task)
        ack: str | None = None
        ack_id: int | None = None
        if known is not None and known.acknowledged_by_discord_id:
            ack_id = known.acknowledged_by_discord_id
        elif known is not None and known.acknowledged_by_name:
            ack = known.acknowledged_by_name
        elif task.claimed_by:
            ack = task.claimed_by
        items.append(
            PendingItem(
                task_id=task.id,
                title=task.title,
                priority=task.priority,
                status=task.status,
                created_at=task.created_at,
                deadline=deadline,
                breached=task.sla_breached or deadline <= now,
                link=jump_link(guild_id, known.channel_id, known.message_id) if known else None,
                acknowledged_by=ack,
                acknowledged_by_id=ack_id,
            )
        )
    return sorted(items, key=PendingItem.sort_key)


def pending_line(item: PendingItem, now: datetime) -> str:
    """``🔴 **Title** · critical · age 2h 05m · 🚨 SLA breached <t:…:R> · 👀 <@id> · [jump](…)``.

    A member who acknowledged is a real ``<@id>`` mention, so that Discord shows the member
    (https://discord.com/developers/docs/reference#message-formatting); it pings nobody, as
    interaction answers go out with ``allowed_mentions`` none
    (:data:`bot.discord.limits.NO_PINGS`). A name is factory text and is escaped.
    """
    due = discord_timestamp(item.deadline)
    deadline = f"🚨 SLA breached {due}" if item.breached else f"due {due}"
    parts = [
        f"{PRIORITY_EMOJI[item.priority]} **{_clean(item.title, 90)}**",
        item.priority.value,
        f"age {age_text(now - item.created_at)}",
        deadline,
    ]
    if item.acknowledged_by_id:
        parts.append(f"👀 <@{int(item.acknowledged_by_id)}>")
    elif item.acknowledged_by:
        parts.append(f"👀 {_clean(item.acknowledged_by, 40)}")
    parts.append(f"[jump]({item.link})" if item.link else f"`{item.task_id}`")
    return truncate(" · ".join(parts), LINE_MAX)


# ---------------------------------------------------------------------------------- pipelines
def stage_progress(pipeline: Pipeline) -> str:
    """``review 5/8 ▰▰▰▰▰▱▱▱`` from the pipeline's current stage (contract stage order)."""
    stage = pipeline.current_stage
    if stage is None:
        return "stage —"
    position = _STAGES.index(stage) + 1
    done = len(_STAGES) if pipeline.status == "completed" else position
    bar = "▰" * done + "▱" * (len(_STAGES) - done)
    return f"{stage.value} {position}/{len(_STAGES)} {bar}"


def sort_pipelines(pipelines: Iterable[Pipeline]) -> list[Pipeline]:
    """Failed first, then active, paused, completed, archived; then priority, then name."""
    return sorted(
        pipelines,
        key=lambda p: (
            _PIPELINE_STATUS_ORDER.get(p.status, 9),
            PRIORITY_ORDER[p.priority],
            p.name.lower(),
        ),
    )


def pipeline_line(pipeline: Pipeline) -> str:
    """``▶️ **GHL MCP Server** · 🔴 critical · review 5/8 ▰▰▰▰▰▱▱▱ · active``.

    The name and the status are factory text (the status is any string, not only the
    contract's five): both are cut and escaped (:func:`_clean`).
    """
    status = pipeline.status
    parts = [
        f"{_PIPELINE_STATUS_EMOJI.get(status, '•')} **{_clean(pipeline.name, 80)}**",
        f"{PRIORITY_EMOJI[pipeline.priority]} {pipeline.priority.value}",
        stage_progress(pipeline),
        _clean(status, 30),
    ]
    return truncate(" · ".join(parts), LINE_MAX)


# ---------------------------------------------------------------------------------- history
def history_line(entry: AuditRecord) -> str:
    """``<t:…:f> **alice** via button · task.approved → ok — detail``."""
    text = (
        f"{discord_timestamp(entry.at, 'f')} **{_clean(entry.actor_name, 40)}** via {entry.via}"
        f" · `{entry.action}` → {entry.outcome}"
    )
    notes = (entry.request or {}).get("notes")
    if notes:
        text += f" · “{_clean(str(notes), 120)}”"
    if entry.detail:
        text += f" — {_clean(entry.detail, 160)}"
    return truncate(text, LINE_MAX)


# ---------------------------------------------------------------------------------- status
#: The largest count ``/factory status`` shows; a larger one is shown as this (JSON numbers
#: are unbounded, and a field value is at most 1024 characters).
COUNT_MAX = 999_999_999
#: The largest average wait (minutes) shown: what a ``datetime.timedelta`` can hold.
_WAIT_MAX_MINUTES = timedelta.max.total_seconds() / 60
#: What ``/factory status`` says when the summary is not a JSON object.
SUMMARY_UNREADABLE = "⚠️ The factory answered something unreadable. Nothing was changed; try again."


def _section(summary: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """An object of the summary (``tasks``, ``slaStatus`` …); anything else counts as missing."""
    value = summary.get(key)
    return value if isinstance(value, Mapping) else {}


def _count(mapping: Mapping[str, Any], key: str) -> int:
    """A count of the summary, within ``0..COUNT_MAX``; missing or unreadable (not a number,
    NaN, infinite — JSON's ``1e999`` reads as infinity) counts as 0."""
    try:
        return min(max(int(mapping.get(key, 0) or 0), 0), COUNT_MAX)
    except (TypeError, ValueError, OverflowError):
        return 0


def _wait_text(wait: Any) -> str | None:
    """The average wait (minutes) as an age, or ``None`` when it is no finite number that a
    ``timedelta`` can hold (NaN, infinity, 2e12 minutes)."""
    if isinstance(wait, bool) or not isinstance(wait, int | float):
        return None
    if not math.isfinite(wait) or abs(wait) >= _WAIT_MAX_MINUTES:
        return None
    return age_text(timedelta(minutes=wait))


def status_embed(summary: Mapping[str, Any] | Any) -> discord.Embed:
    """The ``/factory status`` embed from ``GET /v1/dashboard/summary`` (contract §1.5).

    Fields: pending tasks by priority, SLA on-track / warning / breached, pipelines (active,
    paused, failed), agents (in error of total). Missing keys count as 0, and so does a section
    that is not an object or a count that is no usable number (:func:`_count`). Red when
    anything is breached or an agent is in error, orange on SLA warnings, green otherwise. A
    summary that is not an object at all gives an embed saying :data:`SUMMARY_UNREADABLE`.
    """
    if not isinstance(summary, Mapping):
        return discord.Embed(
            title="🏭 Factory status", description=SUMMARY_UNREADABLE, colour=0xFFA500
        )
    tasks = _section(summary, "tasks")
    by_priority = _section(tasks, "byPriority")
    sla = _section(summary, "slaStatus")
    pipelines = _section(summary, "pipelines")
    agents = _section(summary, "agents")
    breached, warning = _count(sla, "breached"), _count(sla, "warning")
    errors = _count(agents, "error")
    colour = 0x2ECC71
    if warning:
        colour = 0xFFA500
    if breached or errors:
        colour = 0xE74C3C
    embed = discord.Embed(title="🏭 Factory status", colour=colour)
    lines = [f"{PRIORITY_EMOJI[p]} {p.value}: **{_count(by_priority, p.value)}**" for p in Priority]
    lines.append(
        f"pending **{_count(tasks, 'pending')}** · in progress **{_count(tasks, 'inProgress')}**"
        f" · blocking **{_count(tasks, 'blocked')}**"
    )
    embed.add_field(name="Open tasks by priority", value="\n".join(lines), inline=False)
    embed.add_field(
        name="SLA",
        value=f"✅ on track **{_count(sla, 'onTrack')}** · ⚠️ warning **{warning}**"
        f" · 🚨 breached **{breached}**",
        inline=False,
    )
    embed.add_field(
        name="Pipelines",
        value=f"▶️ active **{_count(pipelines, 'active')}** · ⏸️ paused "
        f"**{_count(pipelines, 'paused')}** · ❌ failed **{_count(pipelines, 'failed')}**",
        inline=False,
    )
    embed.add_field(
        name="Agents",
        value=f"{'🚨' if errors else '✅'} in error **{errors}** of {_count(agents, 'total')}"
        f" · active {_count(agents, 'active')} · offline {_count(agents, 'offline')}",
        inline=False,
    )
    wait = _wait_text(tasks.get("avgWaitTimeMinutes"))
    if wait is not None:
        embed.set_footer(text=f"average wait of open tasks: {wait}")
    return embed


def priority_colour(priority: Priority | None) -> int:
    """The embed colour of a listing filtered to ``priority`` (blurple when unfiltered)."""
    return PRIORITY_COLOURS[priority] if priority is not None else 0x5865F2
