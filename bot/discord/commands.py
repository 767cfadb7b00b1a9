"""The ``/factory`` slash commands (reference 002 §6.2), synced to ``DISCORD_GUILD_ID``.

- ``/factory status`` — the dashboard summary (``GET /v1/dashboard/summary``).
- ``/factory pending [priority]`` — open tasks by SLA urgency, with jump links.
- ``/factory approve task [notes]``, ``reject task reason``, ``ack task``,
  ``snooze task duration`` — the same actions and checks as the task message's buttons
  (:meth:`Bridge.decide`, :meth:`Bridge.acknowledge`, :meth:`Bridge.snooze`); approving a
  production deploy needs the deploy role and the "type DEPLOY" modal.
- ``/factory pipelines [status]``, ``/factory blockers`` (reference 002 §4.3).
- ``/factory history task`` — one task's audit trail.

Every answer is ephemeral. Commands that call the factory defer first (Discord: an interaction
must be answered within 3 s) and then edit the "thinking…" answer; ``task`` autocompletes from
the store's open tasks (local, fast). Long listings are paged with ◀ / ▶ buttons that are
:class:`discord.ui.DynamicItem`\\ s: a click re-reads the data (nothing is kept in memory), so
paging works after a restart too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot.discord.embeds import truncate
from bot.discord.limits import answer
from bot.discord.listing import (
    PRIORITY_EMOJI,
    blocker_line,
    find_blockers,
    history_line,
    page_embed,
    paginate,
    pending_items,
    pending_line,
    pipeline_line,
    priority_colour,
    sort_pipelines,
    status_embed,
)
from bot.discord.modals import open_modal
from bot.discord.views import (
    REASON_MAX,
    SNOOZE_CHOICES,
    TASK_ID,
    DeployConfirmModal,
    actor_from,
    bridge_of,
    run_decision,
    snooze_seconds,
)
from bot.factory.client import FactoryError, FactoryUnavailable
from escalation.models import Priority, Task, TaskStatus
from escalation.permissions import needs_deploy_confirmation

if TYPE_CHECKING:
    from bot.bridge import Bridge, Outcome
    from bot.discord.client import BridgeClient
    from bot.settings import Settings

__all__ = [
    "AUTOCOMPLETE_LIMIT",
    "FactoryGroup",
    "PageButton",
    "Rendered",
    "SlashCommands",
    "render_listing",
    "task_autocomplete",
]

log = logging.getLogger(__name__)

#: Discord: at most 25 autocomplete choices.
AUTOCOMPLETE_LIMIT = 25
_TASK_ID_RE = re.compile(rf"^{TASK_ID}$")
_PIPELINE_STATUSES = ("active", "paused", "completed", "failed", "archived")
_KINDS = ("pending", "pipelines", "blockers", "history")
_AGAIN = (
    "The bridge had not seen this task yet and has now loaded it. Run {command} again to "
    "continue; nothing was sent to the factory."
)
_UNREACHABLE = "⚠️ The factory could not be reached ({problem}). Nothing was changed; try again."

PRIORITY_CHOICES = [
    app_commands.Choice(name=f"{PRIORITY_EMOJI[p]} {p.value}", value=p.value) for p in Priority
]
STATUS_CHOICES = [app_commands.Choice(name=s, value=s) for s in _PIPELINE_STATUSES]
SNOOZE_DURATIONS = [
    app_commands.Choice(name=label, value=seconds) for label, seconds in SNOOZE_CHOICES
]


# ---------------------------------------------------------------------------------- listings
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
    template=(
        r"fb:pg:(?P<kind>pending|pipelines|blockers|history)"
        rf":(?P<arg>{TASK_ID}|):(?P<page>-?\d{{1,4}}):(?P<dir>[pn])"
    ),
):
    """◀ / ▶ on a listing: ``fb:pg:<kind>:<arg>:<page>:<p|n>``; a click re-renders that page."""

    def __init__(self, kind: str, arg: str, page: int, direction: str, *, disabled: bool = False):
        label = "◀ Previous" if direction == "p" else "Next ▶"
        super().__init__(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=f"fb:pg:{kind}:{arg}:{page}:{direction}",
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
        await interaction.response.defer()
        bridge = bridge_of(interaction)
        try:
            rendered = await render_listing(
                bridge, self.kind, self.arg, self.page, guild_id=_guild_id(interaction)
            )
        except (FactoryError, FactoryUnavailable) as exc:
            await _safe_edit(interaction, content=_UNREACHABLE.format(problem=_problem(exc)))
            return
        await _safe_edit(interaction, content=None, embed=rendered.embed, view=rendered.view)


# ---------------------------------------------------------------------------------- helpers
def _guild_id(interaction: discord.Interaction[Any]) -> int:
    if interaction.guild_id is not None:
        return interaction.guild_id
    return int(getattr(interaction.client, "guild_id", 0))


def _problem(exc: Exception) -> str:
    if isinstance(exc, FactoryError):
        return f"{exc.code}: {exc.message}"
    return str(exc) or type(exc).__name__


async def _safe_edit(interaction: discord.Interaction[Any], **fields: Any) -> None:
    """Edit the original (deferred) answer, fitted to Discord's limits and without pings; a
    Discord failure is logged, never raised."""
    await answer(interaction, **fields)


async def _tell(interaction: discord.Interaction[Any], message: str) -> None:
    """Answer ephemerally, or edit the answer already given (:func:`bot.discord.limits.answer`)."""
    await answer(interaction, message)


async def _refuse_option(
    interaction: discord.Interaction[Any], task_id: str, action: str, problem: str, message: str
) -> None:
    """Answer a command whose option values fail the server-side checks (nothing is sent or
    changed), then audit the refusal with ``problem``."""
    await _tell(interaction, message)
    actor = actor_from(interaction, "command")
    await bridge_of(interaction).store.audit(
        actor_id=str(actor.discord_user_id),
        actor_name=actor.name,
        via="command",
        action=action,
        task_id=task_id,
        outcome="refused",
        detail=problem,
    )


async def _defer_if_unknown(interaction: discord.Interaction[Any], task_id: str) -> None:
    """Defer (ephemeral "thinking…") before a task the bridge never saw is fetched from the
    factory, which may take longer than Discord's 3 s deadline."""
    if await bridge_of(interaction).store.get_task(task_id) is None:
        await interaction.response.defer(ephemeral=True, thinking=True)


def _valid_task_id(text: str) -> str | None:
    task_id = text.strip()
    return task_id if _TASK_ID_RE.match(task_id) else None


async def _bad_task(interaction: discord.Interaction[Any], text: str) -> None:
    await _tell(
        interaction,
        f"`{discord.utils.escape_markdown(truncate(text, 80))}` is not a task id: pick a task "
        "from the list that appears as you type. Nothing was sent to the factory.",
    )


async def _listing(interaction: discord.Interaction[Any], kind: str, arg: str) -> None:
    """Defer (the factory may be slow), render page 1, edit the "thinking…" answer."""
    await interaction.response.defer(ephemeral=True, thinking=True)
    try:
        rendered = await render_listing(
            bridge_of(interaction), kind, arg, 0, guild_id=_guild_id(interaction)
        )
    except (FactoryError, FactoryUnavailable) as exc:
        await _safe_edit(interaction, content=_UNREACHABLE.format(problem=_problem(exc)))
        return
    fields: dict[str, Any] = {"embed": rendered.embed}
    if rendered.view is not None:
        fields["view"] = rendered.view
    await _safe_edit(interaction, **fields)


async def task_autocomplete(
    interaction: discord.Interaction[Any], current: str
) -> list[app_commands.Choice[str]]:
    """Open tasks whose title or id contains what was typed, most urgent first (≤ 25).

    Reads the store only (Discord: autocomplete must answer within 3 s). Each choice shows
    the priority and title; its value is the task id.
    """
    try:
        bridge = bridge_of(interaction)
        open_tasks = await bridge.store.open_tasks()
    except Exception:  # an autocomplete failure must not break typing
        log.exception("task autocomplete failed")
        return []
    needle = current.strip().lower()
    now = bridge.clock()
    matches = [
        t
        for t in open_tasks
        if not needle or needle in t.task.title.lower() or needle in t.task_id.lower()
    ]
    matches.sort(
        key=lambda t: (
            0 if t.task.sla_breached or t.deadline <= now else 1,
            t.deadline.timestamp(),
            t.task_id,
        )
    )
    return [
        app_commands.Choice(
            name=truncate(
                f"{PRIORITY_EMOJI[t.task.priority]} {' '.join(t.task.title.split())} · "
                f"{t.task.priority.value}",
                100,
            ),
            value=t.task_id,
        )
        for t in matches[:AUTOCOMPLETE_LIMIT]
    ]


# ---------------------------------------------------------------------------------- the group
class FactoryGroup(app_commands.Group):
    """``/factory …``: the whole decision surface as slash commands (answers are ephemeral)."""

    def __init__(self) -> None:
        super().__init__(name="factory", description="The AI software factory's decisions")

    async def on_error(
        self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError
    ) -> None:
        """Log an unexpected failure and tell the person that nothing was changed."""
        log.error("/factory command failed", exc_info=error)
        await _tell(interaction, "⚠️ Something went wrong; nothing was changed. Please try again.")

    @app_commands.command(name="status", description="The factory's dashboard summary")
    async def status(self, interaction: discord.Interaction[Any]) -> None:
        """``GET /v1/dashboard/summary`` as an embed."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            summary = await bridge_of(interaction).factory.dashboard_summary()
        except (FactoryError, FactoryUnavailable) as exc:
            await _safe_edit(interaction, content=_UNREACHABLE.format(problem=_problem(exc)))
            return
        await _safe_edit(interaction, embed=status_embed(summary))

    @app_commands.command(name="pending", description="Open tasks, most urgent SLA first")
    @app_commands.describe(priority="Only tasks of this priority")
    @app_commands.choices(priority=PRIORITY_CHOICES)
    async def pending(
        self, interaction: discord.Interaction[Any], priority: str | None = None
    ) -> None:
        """Open tasks: breached first, then soonest deadline; jump links to their messages."""
        await _listing(interaction, "pending", priority or "")

    @app_commands.command(name="approve", description="Approve a task")
    @app_commands.describe(task="The task (type to search)", notes="Notes sent with the approval")
    @app_commands.autocomplete(task=task_autocomplete)
    async def approve(
        self,
        interaction: discord.Interaction[Any],
        task: str,
        notes: app_commands.Range[str, 1, REASON_MAX] | None = None,
    ) -> None:
        """Same checks as the Approve button; production deploys open the DEPLOY modal."""
        task_id = _valid_task_id(task)
        if task_id is None:
            await _bad_task(interaction, task)
            return
        bridge = bridge_of(interaction)
        clean_notes = (notes or "").strip() or None
        if clean_notes is not None and len(clean_notes) > REASON_MAX:
            await _refuse_option(
                interaction,
                task_id,
                "task.approved",
                f"notes too long ({len(clean_notes)})",
                f"Notes are at most {REASON_MAX} characters. Nothing was sent to the factory.",
            )
            return
        await _defer_if_unknown(interaction, task_id)
        outcome = await bridge.precheck(task_id, "approved", actor_from(interaction, "command"))
        if outcome is not None:
            await _tell(interaction, outcome.message)
            return
        tracked = await bridge.store.get_task(task_id)
        assert tracked is not None  # precheck found or fetched it
        if needs_deploy_confirmation(tracked.task, "approved", guarded=tracked.guarded):
            if interaction.response.is_done():  # deferred while the factory was asked
                await _tell(interaction, _AGAIN.format(command="/factory approve"))
                return
            modal = DeployConfirmModal(task_id, tracked.task.title, nonce=interaction.id)
            if clean_notes:
                modal.notes.default = clean_notes
            await open_modal(interaction, modal)
            return
        await run_decision(interaction, task_id, "approved", "command", notes=clean_notes)

    @app_commands.command(name="reject", description="Reject a task, with a reason")
    @app_commands.describe(task="The task (type to search)", reason="Why it is rejected")
    @app_commands.autocomplete(task=task_autocomplete)
    async def reject(
        self,
        interaction: discord.Interaction[Any],
        task: str,
        reason: app_commands.Range[str, 1, REASON_MAX],
    ) -> None:
        """Same checks as the Reject button; the reason goes to the factory as ``notes``."""
        task_id = _valid_task_id(task)
        if task_id is None:
            await _bad_task(interaction, task)
            return
        if not reason.strip():
            await _refuse_option(
                interaction,
                task_id,
                "task.rejected",
                "reject reason missing",
                "A rejection needs a reason. Nothing was sent.",
            )
            return
        if len(reason.strip()) > REASON_MAX:
            await _refuse_option(
                interaction,
                task_id,
                "task.rejected",
                f"reject reason too long ({len(reason.strip())} characters)",
                f"The reason is {len(reason.strip())} characters long; at most {REASON_MAX} are "
                "allowed. Nothing was sent to the factory.",
            )
            return
        await _defer_if_unknown(interaction, task_id)
        outcome = await bridge_of(interaction).precheck(
            task_id, "rejected", actor_from(interaction, "command")
        )
        if outcome is not None:
            await _tell(interaction, outcome.message)
            return
        await run_decision(interaction, task_id, "rejected", "command", notes=reason.strip())

    @app_commands.command(name="ack", description="Acknowledge a task (stops reminders)")
    @app_commands.describe(task="The task (type to search)")
    @app_commands.autocomplete(task=task_autocomplete)
    async def ack(self, interaction: discord.Interaction[Any], task: str) -> None:
        """Claim the task at the factory; the message shows "👀 acknowledged by @name"."""
        task_id = _valid_task_id(task)
        if task_id is None:
            await _bad_task(interaction, task)
            return
        await interaction.response.send_message("⏳ Acknowledging…", ephemeral=True)
        outcome: Outcome = await bridge_of(interaction).acknowledge(
            task_id,
            actor_from(interaction, "command"),
            idempotency_seed=f"interaction:{interaction.id}",
        )
        await _tell(interaction, outcome.message)

    @app_commands.command(name="snooze", description="Snooze a task's reminders")
    @app_commands.describe(task="The task (type to search)", duration="For how long")
    @app_commands.autocomplete(task=task_autocomplete)
    @app_commands.choices(duration=SNOOZE_DURATIONS)
    async def snooze(self, interaction: discord.Interaction[Any], task: str, duration: int) -> None:
        """Snooze reminders (recorded by the bridge); the SLA deadline never moves."""
        task_id = _valid_task_id(task)
        if task_id is None:
            await _bad_task(interaction, task)
            return
        if snooze_seconds([str(duration)]) is None:
            await _refuse_option(
                interaction,
                task_id,
                "task.snooze",
                f"snooze value {duration!r} not offered",
                "That is not one of the offered snooze durations (1 hour, 4 hours, 24 hours). "
                "Nothing was changed.",
            )
            return
        await interaction.response.send_message("⏳ Snoozing…", ephemeral=True)
        outcome = await bridge_of(interaction).snooze(
            task_id, actor_from(interaction, "command"), duration
        )
        await _tell(interaction, outcome.message)

    @app_commands.command(name="pipelines", description="Pipelines with stage and progress")
    @app_commands.describe(status="Only pipelines with this status")
    @app_commands.choices(status=STATUS_CHOICES)
    async def pipelines(
        self, interaction: discord.Interaction[Any], status: str | None = None
    ) -> None:
        """``GET /v1/pipelines``: failed first, then active …; stage and a progress bar."""
        await _listing(interaction, "pipelines", status or "")

    @app_commands.command(name="blockers", description="What is stuck and why")
    async def blockers(self, interaction: discord.Interaction[Any]) -> None:
        """Reference 002 §4.3: blocking tasks and failed pipelines, most urgent first."""
        await _listing(interaction, "blockers", "")

    @app_commands.command(name="history", description="One task's audit history")
    @app_commands.describe(task="The task (type to search, or paste an id)")
    @app_commands.autocomplete(task=task_autocomplete)
    async def history(self, interaction: discord.Interaction[Any], task: str) -> None:
        """Every audited action on the task, oldest first (``store.audit_entries``)."""
        task_id = _valid_task_id(task)
        if task_id is None:
            await _bad_task(interaction, task)
            return
        await _listing(interaction, "history", task_id)


class SlashCommands:
    """Feature object: adds ``/factory`` to the client's tree for ``DISCORD_GUILD_ID``.

    ``BridgeClient.setup_hook`` calls :meth:`setup_client` before it syncs the guild's
    commands, so the group is synced with the rest.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.group = FactoryGroup()

    async def setup_client(self, client: BridgeClient) -> None:
        """Register the pager buttons and the command group (guild-scoped)."""
        client.add_dynamic_items(PageButton)
        client.tree.add_command(self.group, guild=discord.Object(id=self.settings.discord_guild_id))
