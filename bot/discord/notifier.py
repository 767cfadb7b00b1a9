"""The Discord side of the bridge (:class:`bot.bridge.Notifier`): messages through discord.py.

Posts go through a :class:`~bot.discord.pacing.ChannelPacer` (within Discord's per-channel rate
instead of waiting out 429s); every edit of a task or batch message through
:attr:`DiscordNotifier.edits` (:class:`~bot.discord.edit_queue.EditQueue`: latest render only,
paced per channel with its own budget, 30046-aware).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import discord

from bot.channel_map import ALERT_EVENT_TYPES, event_channels
from bot.discord.edit_queue import EditQueue
from bot.discord.embeds import NextStep, discord_timestamp, task_embed
from bot.discord.event_posts import EventPosts
from bot.discord.feed import FeedQueue
from bot.discord.limits import NO_PINGS, fit_content, fit_message
from bot.discord.pacing import ChannelPacer
from bot.discord.views import task_view
from bot.factory.events import (
    AgentStatusPayload,
    DeployPayload,
    FactoryEvent,
    PipelineBlockedPayload,
    PipelinePayload,
    PipelineStageChangedPayload,
    TaskSlaPayload,
)
from bot.keyed import BoundedMap
from bot.message_faults import CHANNEL_FAULT_CODES, ChannelUnavailable, MessageGone
from bot.pipelines import PipelineNames
from bot.settings import Settings
from bot.sla_events import SLA_EVENT_TYPES
from bot.store import TrackedTask
from escalation.markup import code_span, inline_text
from escalation.models import Priority

__all__ = ["DiscordNotifier", "event_text"]

log = logging.getLogger(__name__)

#: Most task messages whose last render is remembered (to skip edits that change nothing).
SHOWN_LIMIT = 4096

#: Most seconds a caller of an edit waits for it to be sent (a person's answer waits for it
#: at most this long; past it, the edit goes on in the background and a failure goes to
#: :attr:`DiscordNotifier.on_edit_fault`).
EDIT_WAIT_SECONDS = 1.5

#: Embed fields that only say when the ladder acts next: a change of those alone is cosmetic.
COSMETIC_FIELDS = frozenset({"Next escalation", "Escalation so far"})


def event_text(event: FactoryEvent) -> str | None:
    """One readable line for an informational event, or ``None`` for types not posted.

    Every piece of factory text in it is escaped (:mod:`escalation.markup`): it never pings
    and its markdown does not render.
    """
    p = event.payload
    if isinstance(p, PipelineBlockedPayload):
        return (
            f"⛔ Pipeline **{inline_text(p.pipeline_name)}** is blocked at "
            f"{inline_text(str(p.blocked_at), 100)}: {inline_text(p.reason, 500)} "
            f"(task {code_span(p.task_id)})"
        )
    if isinstance(p, TaskSlaPayload) and event.type == "task.sla_breached":
        return (
            f"🚨 SLA breached: **{inline_text(p.task_title)}** "
            f"(deadline {discord_timestamp(p.sla_deadline)}, task {code_span(p.task_id)})"
        )
    if isinstance(p, DeployPayload):
        icon = {"started": "🚀", "succeeded": "✅", "failed": "💥"}.get(p.status, "🚀")
        line = (
            f"{icon} Deploy of **{inline_text(p.pipeline_name)}** {inline_text(p.version, 100)} "
            f"to {inline_text(str(p.target))} {inline_text(str(p.status))}"
        )
        if p.url:
            line += f" — {inline_text(p.url, 500)}"
        if p.error:
            line += f"\n> {inline_text(p.error, 500)}"
        return line
    if isinstance(p, AgentStatusPayload):
        line = (
            f"🤖 Agent **{inline_text(p.agent_name)}** is now {inline_text(p.to_status, 50)} "
            f"(was {inline_text(p.from_status, 50)})"
        )
        if p.current_task_id:
            line += f", working on task {code_span(p.current_task_id)}"
        return line
    if isinstance(p, PipelineStageChangedPayload):
        return (
            f"➡️ **{inline_text(p.pipeline_name)}**: {inline_text(str(p.from_stage))} → "
            f"{inline_text(str(p.to_stage))}"
        )
    if isinstance(p, PipelinePayload):
        verbs = {
            "pipeline.created": "🆕 Pipeline created",
            "pipeline.completed": "🏁 Pipeline completed",
            "pipeline.failed": "💥 Pipeline failed",
        }
        line = f"{verbs.get(event.type, event.type)}: **{inline_text(p.pipeline.name)}**"
        if p.reason:
            line += f" — {inline_text(p.reason, 500)}"
        return line
    return None


def _fingerprint(rendered: dict[str, Any]) -> str:
    """A comparable digest of a rendered message (embed and components): 32 hex characters,
    whatever the size of the message (thousands of them are remembered)."""
    embed = rendered.get("embed")
    view = rendered.get("view")
    text = json.dumps(
        [embed.to_dict() if embed else None, view.to_components() if view else None],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _essential(rendered: dict[str, Any]) -> str:
    """The fingerprint of what people must see on a task message: the render without its
    cosmetic fields (:data:`COSMETIC_FIELDS`). Two renders with the same essential
    fingerprint differ only in the "Next escalation" lines."""
    embed = rendered.get("embed")
    data = embed.to_dict() if embed else None
    if data is not None:
        data = dict(data)
        data["fields"] = [f for f in data.get("fields", []) if f.get("name") not in COSMETIC_FIELDS]
    view = rendered.get("view")
    text = json.dumps(
        [data, view.to_components() if view else None, rendered.get("content")],
        sort_keys=True,
        default=str,
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class DiscordNotifier:
    """Posts and edits the bridge's messages.

    Parameters
    ----------
    client:
        The connected ``discord.Client``.
    settings:
        Channel ids, dashboard URL, coverage threshold.
    pacer:
        Keeps message creation per channel within Discord's rate (5 per 5 s).
    next_step:
        Returns the next escalation step to show on a task message (set by the ladder).
    clock:
        Current aware UTC time (to show "SLA breached").
    edit_pacer:
        The per-channel budget of message edits (``DISCORD_EDIT_RATE_LIMIT`` per
        ``DISCORD_CHANNEL_RATE_WINDOW_SECONDS``; default 5 per 5 s), separate from ``pacer``.
    old_edit_backoff_seconds:
        ``DISCORD_OLD_EDIT_BACKOFF_SECONDS``: pause of old-message edits after a 30046.
    """

    def __init__(
        self,
        client: discord.Client,
        settings: Settings,
        *,
        pacer: ChannelPacer | None = None,
        next_step: Callable[[TrackedTask], NextStep | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        edit_pacer: ChannelPacer | None = None,
        old_edit_backoff_seconds: float = 60.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.pacer = pacer or ChannelPacer()
        self.next_step = next_step
        self.clock = clock
        #: posts the factory's SLA events (set by the app: :class:`bot.sla_events.FactorySlaAlerts`)
        self.sla_alerts: Callable[[FactoryEvent], Awaitable[None]] | None = None
        #: pipeline names for the Pipeline field (set by the app: :class:`bot.pipelines.PipelineNames`)
        self.pipeline_names: PipelineNames | None = None
        # what each recent message last showed, in full and without its cosmetic lines: an edit
        # that changes nothing is not sent (bounded; one forgotten costs at most one more edit)
        self._shown: BoundedMap[int, str] = BoundedMap(SHOWN_LIMIT)
        self._essential: BoundedMap[int, str] = BoundedMap(SHOWN_LIMIT)
        #: every edit of a task or batch message (bot.discord.edit_queue)
        self.edits = EditQueue(
            self._edit_now,
            pacer=edit_pacer or ChannelPacer(),
            old_backoff_seconds=old_edit_backoff_seconds,
        )
        #: told about an edit that failed after its caller stopped waiting
        #: (``async (task_id, MessageGone | ChannelUnavailable | Exception)``; set by the app)
        self.on_edit_fault: Callable[[str, Exception], Awaitable[None]] | None = None
        #: told whenever Discord accepts an edit of a task's message, the only proof that the
        #: channel is usable (``async (task_id, channel_id)``; set by ``Bridge.attach_notifier``)
        self.on_edit_sent: Callable[[str, int], Awaitable[None]] | None = None
        self._late: set[asyncio.Task[None]] = set()
        #: feed-channel posts, queued and coalesced so they never hold up the caller
        #: (bot.discord.feed; closed by the app on stop)
        self.feed = FeedQueue(
            lambda channel_id, text: self.send(channel_id, text),
            pacer=self.pacer,
            max_pending=settings.discord_feed_max_pending,
        )
        #: alert and deploy lines: each channel on its own, once (bot.discord.event_posts)
        self.event_posts = EventPosts(self.send, self.channel_fault, client, settings)

    def channel(self, channel_id: int) -> discord.PartialMessageable:
        """A channel handle that needs no cache (works before the guild is chunked)."""
        return self.client.get_partial_messageable(
            channel_id, guild_id=self.settings.discord_guild_id
        )

    def render(self, tracked: TrackedTask) -> dict[str, Any]:
        """``embed`` and ``view`` keyword arguments for sending or editing a task message."""
        breached = tracked.deadline <= self.clock()
        embed = task_embed(
            tracked,
            min_coverage_percent=self.settings.batch_min_coverage_percent,
            next_step=self.next_step(tracked) if self.next_step else None,
            sla_breached=breached,
            required_approvals=tracked.approvals_required(self.settings.deploy_required_approvers),
            pipeline_name=(
                self.pipeline_names.get(tracked.task.pipeline_id) if self.pipeline_names else None
            ),
        )
        view = task_view(tracked, dashboard_url=self.settings.factory_dashboard_url)
        return fit_message({"embed": embed, "view": view})

    async def send(
        self,
        channel_id: int,
        content: str | None = None,
        *,
        allowed_mentions: discord.AllowedMentions = NO_PINGS,
        reference: tuple[int, int] | None = None,
        urgent: bool = False,
        **kwargs: Any,
    ) -> discord.Message:
        """Create a message, paced per channel; ``reference`` = (channel id, message id) to reply to.

        ``urgent`` messages (critical and high tasks, SLA alerts) take the channel's next free
        slot instead of queuing behind routine ones (batch messages during a burst). Content,
        embeds and components are fitted to Discord's limits
        (:func:`bot.discord.limits.fit_message`).
        """
        if reference is not None:
            kwargs["reference"] = discord.MessageReference(
                message_id=reference[1], channel_id=reference[0], fail_if_not_exists=False
            )
        fitted = fit_message({"content": content, **kwargs})
        slot = await self.pacer.acquire(channel_id, urgent=urgent)
        try:
            return await self.channel(channel_id).send(  # type: ignore[call-overload, no-any-return]
                allowed_mentions=allowed_mentions, **fitted
            )
        finally:
            self.pacer.mark_sent(slot)

    def channel_fault(self, channel_id: int, exc: discord.HTTPException) -> ChannelUnavailable:
        """Discord's refusal ``exc`` of a request about ``channel_id`` (JSON error codes 10003
        Unknown Channel, 50001 Missing Access, 50013 Missing Permissions) as the
        :class:`~bot.message_faults.ChannelUnavailable` to raise, in words an operator reads
        (``"no Send Messages in #factory-tasks"``)."""
        found = self.client.get_channel(channel_id)
        name = getattr(found, "name", None)
        where = f"#{name}" if name else f"channel {channel_id}"
        reason = {
            10003: f"{where} does not exist",
            50001: f"no access to {where}",
            50013: f"no Send Messages in {where}",
        }.get(exc.code, f"{where}: {exc.text}")
        return ChannelUnavailable(channel_id, exc.code, reason)

    async def post_task(self, tracked: TrackedTask, *, note: str | None = None) -> tuple[int, int]:
        """Post the single-task message in ``DISCORD_TASKS_CHANNEL_ID``; ``note`` is shown as
        the message's content (e.g. :data:`bot.message_faults.REPOSTED_NOTE`).

        Raises
        ------
        bot.message_faults.ChannelUnavailable
            Discord answered 10003, 50001 or 50013 (channel gone, no access, no permission).
        """
        channel_id = self.settings.discord_tasks_channel_id
        if self.pipeline_names is not None:  # the name for the Pipeline field, read once
            await self.pipeline_names.resolve(tracked.task.pipeline_id)
        rendered = self.render(tracked)
        task = tracked.task
        urgent = task.priority in (Priority.CRITICAL, Priority.HIGH) or tracked.guarded
        try:
            message = await self.send(channel_id, note, urgent=urgent, **rendered)
        except discord.HTTPException as exc:
            if exc.code in CHANNEL_FAULT_CODES:
                raise self.channel_fault(channel_id, exc) from exc
            raise
        self._shown[message.id] = _fingerprint(rendered)
        self._essential[message.id] = _essential(rendered)
        return channel_id, message.id

    async def _edit_now(self, channel_id: int, message_id: int, payload: dict[str, Any]) -> None:
        """One edit, as :class:`~bot.discord.edit_queue.EditQueue` sends it.

        Raises
        ------
        bot.message_faults.MessageGone
            10008 Unknown Message; 10003 Unknown Channel (deleted with its channel).
        bot.message_faults.ChannelUnavailable
            50001 or 50013; what the message showed is forgotten, so that a retry always
            sends its edit (and waits for it) even when it renders the same.
        discord.HTTPException
            Anything else, 30046 included (the queue pauses old messages on it).
        """
        message = self.channel(channel_id).get_partial_message(message_id)
        try:
            await message.edit(**payload)
        except discord.HTTPException as exc:
            if exc.code == 10008:
                raise MessageGone(channel_id, message_id) from exc
            if exc.code == 10003:
                raise MessageGone(channel_id, message_id, "Unknown Channel") from exc
            if exc.code in CHANNEL_FAULT_CODES:
                self._shown.pop(message_id)
                self._essential.pop(message_id)
                raise self.channel_fault(channel_id, exc) from exc
            raise
        self._shown[message_id] = _fingerprint(payload)
        if "embed" in payload:
            self._essential[message_id] = _essential(payload)

    async def queue_edit(
        self,
        channel_id: int,
        message_id: int,
        payload: dict[str, Any],
        *,
        important: bool = True,
        on_late_fault: Callable[[Exception], Awaitable[None]] | None = None,
        on_late_sent: Callable[[], Awaitable[None]] | None = None,
        wait: bool = True,
    ) -> bool | None:
        """Queue an edit (:attr:`edits`) and wait for it at most :data:`EDIT_WAIT_SECONDS`
        (not at all without ``wait``: nobody waits on a factory event's edit).

        Parameters
        ----------
        channel_id, message_id : int
            The message.
        payload : dict
            Keyword arguments of ``Message.edit`` (fitted already).
        important : bool
            Never dropped, served before cosmetic edits (see :mod:`bot.discord.edit_queue`).
        on_late_fault : callable, optional
            Called with the exception when the edit fails after the wait ended (logged
            otherwise).
        on_late_sent : callable, optional
            Called when Discord accepts the edit after the wait ended (``None`` below).

        Returns
        -------
        bool or None
            ``True`` sent (accepted by Discord), ``False`` dropped, ``None`` still queued (the
            caller goes on; the edit follows as soon as the budget allows). A cosmetic edit
            always gives ``None`` at once (in a storm of ladder refreshes nobody waits for them).

        Raises
        ------
        bot.message_faults.MessageGone, bot.message_faults.ChannelUnavailable
            The edit failed within the wait (10008; 10003 / 50001 / 50013).
        discord.HTTPException
            Another refusal within the wait.
        """
        future = self.edits.submit(channel_id, message_id, payload, important=important)
        # a cosmetic edit is never waited for: a storm of them must hold nobody up
        if important and wait:
            done, _ = await asyncio.wait({future}, timeout=EDIT_WAIT_SECONDS)
            if future in done:
                return future.result()

        def settled(fut: asyncio.Future[bool]) -> None:
            exc = None if fut.cancelled() else fut.exception()
            if exc is None and not fut.cancelled() and fut.result() and on_late_sent:
                self._in_background(on_late_sent())
            elif isinstance(exc, Exception) and on_late_fault is not None:
                self._in_background(on_late_fault(exc))
            elif isinstance(exc, Exception):
                log.warning("edit of message %s failed: %r", message_id, exc)

        future.add_done_callback(settled)
        return None

    def _in_background(self, call: Awaitable[None]) -> None:
        """Run a late outcome's handler, keeping a reference until it ends."""
        task: asyncio.Task[None] = asyncio.ensure_future(call)
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def edit_task(self, tracked: TrackedTask, *, wait: bool = True) -> None:
        """Bring the task's own message up to date (batch items are edited by the batcher).

        The edit goes through :attr:`edits` (:meth:`queue_edit`): this returns once it was
        sent, or after :data:`EDIT_WAIT_SECONDS` while it still waits for the channel's edit
        budget, or at once without ``wait`` (a later failure then goes to :attr:`on_edit_fault`). Discord accepting it, now
        or later, is told to :attr:`on_edit_sent`: returning proves nothing (queued, dropped…).

        Raises
        ------
        bot.message_faults.MessageGone
            Discord answered 10008 Unknown Message (a person deleted it) or 10003 Unknown
            Channel (the channel was deleted with the message).
        bot.message_faults.ChannelUnavailable
            Discord answered 50001 Missing Access or 50013 Missing Permissions.
        """
        if tracked.channel_id is None or tracked.message_id is None:
            return
        if tracked.batch_id is not None:
            batcher = getattr(self.client, "bridge", None)
            batcher = getattr(batcher, "batcher", None)
            if batcher is not None:
                await batcher.refresh_batch(tracked.batch_id)
            return
        if self.pipeline_names is not None:
            await self.pipeline_names.resolve(tracked.task.pipeline_id)
        rendered = self.render(tracked)
        fingerprint = _fingerprint(rendered)
        if self._shown.get(tracked.message_id) == fingerprint:
            return
        # a render that changes only the "Next escalation" lines is cosmetic: coalesced and,
        # in a storm, dropped; anything else (decision, acknowledgement, breach) is never
        # dropped (an unknown earlier render counts as a change)
        important = self._essential.get(tracked.message_id) != _essential(rendered)
        task_id = tracked.task_id
        channel_id = tracked.channel_id

        async def late(exc: Exception) -> None:
            if self.on_edit_fault is not None:
                await self.on_edit_fault(task_id, exc)

        async def sent() -> None:
            if self.on_edit_sent is not None:
                await self.on_edit_sent(task_id, channel_id)

        if await self.queue_edit(
            channel_id,
            tracked.message_id,
            rendered,
            important=important,
            on_late_fault=late,
            on_late_sent=sent,
            wait=wait,
        ):
            await sent()

    async def post_event(self, event: FactoryEvent) -> None:
        """Post an informational event to its channels (:func:`bot.channel_map.event_channels`).

        The factory's SLA events go to :attr:`sla_alerts` when set (they ping, once per
        moment: :mod:`bot.sla_events`). Lines for the feed channel are queued on :attr:`feed`
        (posted coalesced in the background), so a burst of them holds up nothing; the others
        go through :attr:`event_posts` (a refused channel does not fail the event).
        """
        if self.sla_alerts is not None and event.type in SLA_EVENT_TYPES:
            await self.sla_alerts(event)
            return
        channels = event_channels(event, self.settings)
        if not channels:  # most routine events: nothing to render either
            return
        text = event_text(event)
        if text is None:
            return
        urgent = event.type in ALERT_EVENT_TYPES
        feed = self.settings.discord_feed_channel_id
        if not urgent and feed in channels:
            self.feed.submit(feed, text)
        direct = [c for c in channels if urgent or c != feed]
        await self.event_posts.post(event, direct, text, urgent=urgent)

    async def send_dm(self, user_id: int, content: str) -> None:
        """DM ``user_id`` (paced like any message, no pings, cut to 2000 characters).

        Raises
        ------
        discord.HTTPException
            E.g. 403 code 50007 when the person closed their DMs.
        """
        channel = await self.client.create_dm(discord.Object(id=user_id))
        slot = await self.pacer.acquire(channel.id)
        try:
            await channel.send(fit_content(content), allowed_mentions=NO_PINGS)
        finally:
            self.pacer.mark_sent(slot)
