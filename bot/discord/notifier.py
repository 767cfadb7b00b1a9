"""The Discord side of the bridge: posts and edits messages through discord.py.

Implements :class:`bot.bridge.Notifier`. Message creation goes through a
:class:`~bot.discord.pacing.ChannelPacer` so that the bridge stays within Discord's per-channel
rate on its own instead of waiting out 429s.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import discord

from bot.discord.embeds import NextStep, discord_timestamp, task_embed, truncate
from bot.discord.pacing import ChannelPacer
from bot.discord.views import task_view
from bot.factory.events import (
    DeployPayload,
    FactoryEvent,
    PipelineBlockedPayload,
    PipelinePayload,
    PipelineStageChangedPayload,
    TaskSlaPayload,
)
from bot.settings import Settings
from bot.store import TrackedTask
from escalation.models import Priority

__all__ = ["DiscordNotifier", "event_channel"]

log = logging.getLogger(__name__)

NO_PINGS = discord.AllowedMentions.none()


def event_channel(event_type: str, settings: Settings) -> int | None:
    """The channel an informational event goes to, or ``None`` (not posted).

    Channel map (reference 002 §6.2): pipeline.blocked, pipeline.failed and task.sla_breached →
    alerts; deploy.* → deploys; pipeline.created / stage_changed / completed → feed. Optional
    channels that are not set are not posted to.
    """
    if event_type in ("pipeline.blocked", "pipeline.failed", "task.sla_breached"):
        return settings.alerts_channel_id
    if event_type.startswith("deploy."):
        return settings.discord_deploys_channel_id
    if event_type in ("pipeline.created", "pipeline.stage_changed", "pipeline.completed"):
        return settings.discord_feed_channel_id
    return None


def event_text(event: FactoryEvent) -> str | None:
    """One readable line for an informational event, or ``None`` for types not posted."""
    p = event.payload
    if isinstance(p, PipelineBlockedPayload):
        return (
            f"⛔ Pipeline **{p.pipeline_name}** is blocked at `{p.blocked_at}`: "
            f"{truncate(p.reason, 500)} (task `{p.task_id}`)"
        )
    if isinstance(p, TaskSlaPayload) and event.type == "task.sla_breached":
        return (
            f"🚨 SLA breached: **{truncate(p.task_title, 200)}** "
            f"(deadline {discord_timestamp(p.sla_deadline)}, task `{p.task_id}`)"
        )
    if isinstance(p, DeployPayload):
        icon = {"started": "🚀", "succeeded": "✅", "failed": "💥"}.get(p.status, "🚀")
        line = f"{icon} Deploy of **{p.pipeline_name}** `{p.version}` to {p.target} {p.status}"
        if p.url:
            line += f" — {p.url}"
        if p.error:
            line += f"\n> {truncate(p.error, 500)}"
        return line
    if isinstance(p, PipelineStageChangedPayload):
        return f"➡️ **{p.pipeline_name}**: {p.from_stage} → {p.to_stage}"
    if isinstance(p, PipelinePayload):
        verbs = {
            "pipeline.created": "🆕 Pipeline created",
            "pipeline.completed": "🏁 Pipeline completed",
            "pipeline.failed": "💥 Pipeline failed",
        }
        line = f"{verbs.get(event.type, event.type)}: **{p.pipeline.name}**"
        if p.reason:
            line += f" — {truncate(p.reason, 500)}"
        return line
    return None


def _fingerprint(rendered: dict[str, Any]) -> str:
    """A comparable form of a rendered message (embed and components)."""
    embed = rendered.get("embed")
    view = rendered.get("view")
    return json.dumps(
        [embed.to_dict() if embed else None, view.to_components() if view else None],
        sort_keys=True,
        default=str,
    )


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
    """

    def __init__(
        self,
        client: discord.Client,
        settings: Settings,
        *,
        pacer: ChannelPacer | None = None,
        next_step: Callable[[TrackedTask], NextStep | None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.client = client
        self.settings = settings
        self.pacer = pacer or ChannelPacer()
        self.next_step = next_step
        self.clock = clock
        # what each message last showed: an edit that changes nothing is not sent
        self._shown: dict[int, str] = {}

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
        )
        view = task_view(tracked, dashboard_url=self.settings.factory_dashboard_url)
        return {"embed": embed, "view": view}

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
        slot instead of queuing behind routine ones (batch messages during a burst).
        """
        if reference is not None:
            kwargs["reference"] = discord.MessageReference(
                message_id=reference[1], channel_id=reference[0], fail_if_not_exists=False
            )
        slot = await self.pacer.acquire(channel_id, urgent=urgent)
        try:
            return await self.channel(channel_id).send(  # type: ignore[call-overload, no-any-return]
                content, allowed_mentions=allowed_mentions, **kwargs
            )
        finally:
            self.pacer.mark_sent(slot)

    async def post_task(self, tracked: TrackedTask) -> tuple[int, int]:
        """Post the single-task message in ``DISCORD_TASKS_CHANNEL_ID``."""
        channel_id = self.settings.discord_tasks_channel_id
        rendered = self.render(tracked)
        task = tracked.task
        urgent = task.priority in (Priority.CRITICAL, Priority.HIGH) or task.deploys_to_production
        message = await self.send(channel_id, urgent=urgent, **rendered)
        self._shown[message.id] = _fingerprint(rendered)
        return channel_id, message.id

    async def edit_task(self, tracked: TrackedTask) -> None:
        """Bring the task's own message up to date (batch items are edited by the batcher)."""
        if tracked.channel_id is None or tracked.message_id is None:
            return
        if tracked.batch_id is not None:
            batcher = getattr(self.client, "bridge", None)
            batcher = getattr(batcher, "batcher", None)
            if batcher is not None:
                await batcher.refresh_batch(tracked.batch_id)
            return
        rendered = self.render(tracked)
        fingerprint = _fingerprint(rendered)
        if self._shown.get(tracked.message_id) == fingerprint:
            return
        message = self.channel(tracked.channel_id).get_partial_message(tracked.message_id)
        await message.edit(**rendered)
        self._shown[tracked.message_id] = fingerprint

    async def post_event(self, event: FactoryEvent) -> None:
        """Post an informational event to its channel (see :func:`event_channel`)."""
        channel_id = event_channel(event.type, self.settings)
        if channel_id is None:
            return
        text = event_text(event)
        if text is None:
            return
        await self.send(channel_id, truncate(text, 2000))
