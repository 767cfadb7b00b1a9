"""The ``/factory`` listings (pending, pipelines, blockers, history) and their ◀ / ▶ pages.

:func:`render_listing` fetches what a listing shows (from the factory, or the store) and renders
one page with the pure renderers of :mod:`bot.discord.listing`; :func:`show_listing` answers a
command with page 1. Long listings get ◀ / ▶ buttons (:class:`PageButton`, a
:class:`discord.ui.DynamicItem`, id ``fb:pg:<kind>:<arg>:<page>:<p|n>``): a click re-reads the
data (nothing is kept in memory), so paging works after a restart too.

Discord: an interaction must be answered within 3 s and the factory may be slower, so each
answer is deferred first and the "thinking…" answer (or the listing) edited afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.discord import ids
from bot.discord.blockers import blocker_line, find_blockers
from bot.discord.client import bot_of, bridge_of
from bot.discord.listing import (
    history_line,
    page_embed,
    paginate,
    pending_items,
    pending_line,
    pipeline_line,
    priority_colour,
    sort_pipelines,
)
from bot.discord.replies import answer, defer_thinking, defer_update
from bot.factory.client import FactoryError, FactoryUnavailable
from escalation.markup import inline_text
from escalation.models import Priority, Task, TaskStatus

if TYPE_CHECKING:
    from bot.bridge import Bridge

__all__ = [
    "UNREACHABLE",
    "PageButton",
    "Rendered",
    "guild_id_of",
    "problem_text",
    "render_listing",
    "show_listing",
]

log = logging.getLogger(__name__)

#: The answer when the factory could not be reached (``{problem}``: :func:`problem_text`).
UNREACHABLE = "⚠️ The factory could not be reached ({problem}). Nothing was changed; try again."


@dataclass(frozen=True)
class Rendered:
    """One page of a listing, ready to send: the embed and the ◀ / ▶ buttons (or ``None``)."""

    embed: discord.Embed
    view: discord.ui.View | None


def _now(bridge: Bridge) -> datetime:
    return bridge.clock()


async def _open_factory_tasks(bridge: Bridge, priority: str | None) -> list[Task]:
    """Every open task at the factory (one listing per open status, fetched concurrently)."""
    statuses = [s.value for s in TaskStatus if s.is_open]
    pages = await asyncio.gather(
        *(bridge.factory.iter_tasks(status=s, priority=priority) for s in statuses)
    )
    seen: dict[str, Task] = {}
    for tasks in pages:
        for task in tasks:
            seen.setdefault(task.id, task)
    return list(seen.values())


async def _pending_lines(bridge: Bridge, arg: str, guild_id: int) -> tuple[list[str], str | None]:
    priority = arg or None
    note: str | None = None
    try:
        tasks = await _open_factory_tasks(bridge, priority)
    except (FactoryError, FactoryUnavailable) as exc:
        log.warning("/factory pending: factory unreachable, using the store: %s", exc)
        note = "⚠️ factory unreachable: the bridge's last known state"
        tasks = [
            t.task
            for t in await bridge.store.open_tasks()
            if priority is None or t.task.priority.value == priority
        ]
    tracked = {t.task_id: t for t in await bridge.store.tasks_by_ids([t.id for t in tasks])}
    now = _now(bridge)
    items = pending_items(
        tasks, now=now, deadline_for=bridge.deadline_for, tracked=tracked, guild_id=guild_id
    )
    return [pending_line(item, now) for item in items], note


async def _pipeline_lines(bridge: Bridge, arg: str) -> list[str]:
    pipelines = await bridge.factory.list_pipelines(status=arg or None)
    return [pipeline_line(p) for p in sort_pipelines(pipelines)]


async def _blocker_lines(bridge: Bridge, guild_id: int) -> list[str]:
    pending, claimed, failed = await asyncio.gather(
        bridge.factory.iter_tasks(status=TaskStatus.PENDING.value),
        bridge.factory.iter_tasks(status=TaskStatus.CLAIMED.value),
        bridge.factory.list_pipelines(status="failed"),
    )
    tasks = [*pending, *claimed]
    tracked = {t.task_id: t for t in await bridge.store.tasks_by_ids([t.id for t in tasks])}
    blockers = find_blockers(
        tasks,
        failed,
        now=_now(bridge),
        deadline_for=bridge.deadline_for,
        tracked=tracked,
        guild_id=guild_id,
    )
    return [blocker_line(b) for b in blockers]


async def _history_lines(bridge: Bridge, task_id: str) -> list[str]:
    return [history_line(e) for e in await bridge.store.audit_entries(task_id=task_id)]


async def render_listing(
    bridge: Bridge, kind: str, arg: str, page: int, *, guild_id: int
) -> Rendered:
    """Fetch and render page ``page`` (0-based, clamped) of a listing.

    Parameters
    ----------
    kind:
        ``pending`` (``arg`` = priority or ""), ``pipelines`` (``arg`` = status or ""),
        ``blockers`` (``arg`` = ""), ``history`` (``arg`` = task id).
    guild_id:
        For jump links to task messages.

    Raises
    ------
    FactoryError, FactoryUnavailable
        When the factory could not answer (pipelines, blockers; pending falls back to the
        store and says so).
    """
    note: str | None = None
    if kind == "pending":
        lines, note = await _pending_lines(bridge, arg, guild_id)
        label = f"⏳ Pending tasks · {arg}" if arg else "⏳ Pending tasks"
        empty = "Nothing is waiting for a decision. 🎉"
        colour = priority_colour(Priority(arg) if arg else None)
    elif kind == "pipelines":
        lines = await _pipeline_lines(bridge, arg)
        label = f"🏗️ Pipelines · {arg}" if arg else "🏗️ Pipelines"
        empty = "No pipelines."
        colour = 0x5865F2
    elif kind == "blockers":
        lines = await _blocker_lines(bridge, guild_id)
        label = "🧱 Blockers"
        empty = "Nothing is stuck. 🎉"
        colour = 0xE74C3C if lines else 0x2ECC71
    elif kind == "history":
        lines = await _history_lines(bridge, arg)
        label = f"📜 History of {arg}"
        empty = "No audit entries for this task."
        colour = 0x95A5A6
    else:  # pragma: no cover - the DynamicItem template only matches the kinds above
        raise ValueError(f"unknown listing {kind!r}")
    pages = paginate(lines)
    index = min(max(page, 0), len(pages) - 1)
    embed = page_embed(label, pages, index, total=len(lines), empty=empty, colour=colour, note=note)
    return Rendered(embed, _pager_view(kind, arg, index, len(pages)))


def _pager_view(kind: str, arg: str, page: int, pages: int) -> discord.ui.View | None:
    if pages <= 1:
        return None
    view = discord.ui.View(timeout=None)
    view.add_item(PageButton(kind, arg, page - 1, "p", disabled=page <= 0))
    view.add_item(PageButton(kind, arg, page + 1, "n", disabled=page >= pages - 1))
    return view


class PageButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=ids.PAGE_TEMPLATE,
):
    """◀ / ▶ on a listing: ``fb:pg:<kind>:<arg>:<page>:<p|n>``; a click re-renders that page."""

    def __init__(self, kind: str, arg: str, page: int, direction: str, *, disabled: bool = False):
        label = "◀ Previous" if direction == "p" else "Next ▶"
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=ids.page_button(kind, arg, page, direction),
                disabled=disabled,
            )
        )
        self.kind = kind
        self.arg = arg
        self.page = page
        self.direction = direction

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PageButton:
        """Rebuild the button from its ``custom_id``."""
        return cls(match["kind"], match["arg"], int(match["page"]), match["dir"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        """Defer (3 s deadline), re-fetch, then replace the listing with the asked page."""
        await defer_update(interaction)
        bridge = bridge_of(interaction)
        try:
            rendered = await render_listing(
                bridge, self.kind, self.arg, self.page, guild_id=guild_id_of(interaction)
            )
        except (FactoryError, FactoryUnavailable) as exc:
            await answer(interaction, content=UNREACHABLE.format(problem=problem_text(exc)))
            return
        await answer(interaction, content=None, embed=rendered.embed, view=rendered.view)


# ---------------------------------------------------------------------------------- helpers
def guild_id_of(interaction: discord.Interaction[Any]) -> int:
    """The guild of ``interaction`` (for jump links), else ``DISCORD_GUILD_ID``."""
    if interaction.guild_id is not None:
        return interaction.guild_id
    return bot_of(interaction).guild_id


def problem_text(exc: Exception) -> str:
    """What went wrong at the factory, in a few words (``code: message`` when it answered).

    The code and the message are the factory's text: one line, cut (code 50, message 300
    characters) and escaped (:func:`escalation.markup.inline_text`), since Discord renders
    markdown and masked links in a message's content
    (https://discord.com/developers/docs/reference#message-formatting).
    """
    if isinstance(exc, FactoryError):
        return f"{inline_text(exc.code, 50)}: {inline_text(exc.message, 300)}"
    return inline_text(str(exc), 300) or type(exc).__name__


async def show_listing(interaction: discord.Interaction[Any], kind: str, arg: str) -> None:
    """Answer a command with page 1 of a listing: defer (the factory may be slow), render, edit
    the "thinking…" answer (or say that the factory could not be reached)."""
    await defer_thinking(interaction)
    try:
        rendered = await render_listing(
            bridge_of(interaction), kind, arg, 0, guild_id=guild_id_of(interaction)
        )
    except (FactoryError, FactoryUnavailable) as exc:
        await answer(interaction, content=UNREACHABLE.format(problem=problem_text(exc)))
        return
    fields: dict[str, Any] = {"embed": rendered.embed}
    if rendered.view is not None:
        fields["view"] = rendered.view
    await answer(interaction, **fields)
