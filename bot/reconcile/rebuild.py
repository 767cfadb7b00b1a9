"""Rebuilding the task → message map from the tasks channel, when the store lost it.

At start, when the store knows no task or has open tasks without a message, the bot's own
recent messages in ``DISCORD_TASKS_CHANNEL_ID`` are read and each task they show is given its
message again (how a message names its tasks: :mod:`bot.reconcile.refs`). Nothing is posted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from batching import batch_key
from bot.factory.client import FactoryError, FactoryUnavailable
from bot.reconcile.refs import MessageRefs, message_refs
from bot.reconcile.snapshot import OpenSnapshot
from escalation.models import Task

if TYPE_CHECKING:
    import discord

    from bot.bridge import Bridge

__all__ = ["ChannelRebuild"]

log = logging.getLogger(__name__)


class ChannelRebuild:
    """Gives tasks their lost messages back from the tasks channel's history.

    Parameters
    ----------
    bridge:
        The bridge (store, factory client, escalation, batcher, settings).
    client:
        The Discord client (reads the tasks channel's history).
    history_limit:
        ``RECONCILE_HISTORY_LIMIT``: messages read, newest first (0: never rebuild).
    """

    def __init__(self, bridge: Bridge, client: discord.Client, *, history_limit: int) -> None:
        self.bridge = bridge
        self.client = client
        self.history_limit = history_limit

    async def needed(self) -> bool:
        """Whether the map must be rebuilt: the channel's history may be read
        (``reconcile_history_limit`` > 0) and the store knows no task at all or has open
        tasks without a message."""
        store = self.bridge.store
        if self.history_limit <= 0:
            return False
        return await store.count_tasks() == 0 or bool(await store.open_tasks_without_message())

    async def rebuild(self, pending: Sequence[Task] | OpenSnapshot | None = None) -> int:
        """Rebuild the task → message map from the bot's own recent messages.

        Reads up to ``history_limit`` messages of ``DISCORD_TASKS_CHANNEL_ID`` (newest first);
        for each message of the bot that shows tasks (see :func:`message_refs`), each task the
        store has no message for is fetched (from ``pending`` or ``GET /v1/tasks/{id}``),
        stored, and given that message (:meth:`bot.store.Store.adopt_message`). A task decided
        meanwhile has its message brought up to date. Nothing is posted.

        The open tasks stay compact (:class:`~bot.reconcile.snapshot.OpenSnapshot`, id and
        JSON per task): a model is made only for a task a message of the channel shows (at
        most ``history_limit`` messages' worth), never for all of them at once (100,000 open
        tasks as models: ≈ 0.9 GB with the emulator's default context, traced with
        :mod:`tracemalloc`).

        Parameters
        ----------
        pending:
            The factory's open tasks if already listed (a list or the start-up's
            :class:`~bot.reconcile.snapshot.OpenSnapshot`); ``None``: listed here (every open
            status, :meth:`~bot.reconcile.snapshot.OpenSnapshot.listed`).

        Returns
        -------
        int
            Messages adopted.

        Raises
        ------
        discord.HTTPException
            When the channel's history cannot be read (the reconciler logs it and goes on).
        """
        bridge = self.bridge
        settings = bridge.settings
        if pending is None:
            try:
                pending = await OpenSnapshot.listed(bridge.factory)
            except (FactoryError, FactoryUnavailable) as exc:
                log.warning("rebuild: open tasks not listed (%s); batch items skipped", exc)
                pending = OpenSnapshot()
        elif not isinstance(pending, OpenSnapshot):
            pending = OpenSnapshot(pending)
        open_tasks = pending
        channel_id = settings.discord_tasks_channel_id
        me = self.client.user.id if self.client.user else None
        channel = self.client.get_partial_messageable(
            channel_id, guild_id=settings.discord_guild_id
        )
        adopted = 0
        scanned = 0
        async for message in channel.history(limit=self.history_limit):
            scanned += 1
            if me is not None and message.author.id != me:
                continue
            if message.reference is not None:
                continue  # replies are reminders, not task messages
            refs = message_refs(
                [dict(c.to_dict()) for c in message.components],
                [dict(e.to_dict()) for e in message.embeds],
                known_ids=open_tasks.ids,
            )
            if refs is None:
                continue
            shown: list[Task] = []
            stale = False
            for task_id in refs.task_ids:
                task = await self._adopt(task_id, open_tasks, channel_id, message.id, refs.batch_id)
                if task is not None:
                    adopted += 1
                    shown.append(task)
                    stale = stale or task_id not in open_tasks
            if refs.batch_id is not None and shown:
                await self._restore_batch(refs, shown, channel_id, message.id, refresh=stale)
        log.info(
            "rebuild: read %d messages of channel %s, adopted %d", scanned, channel_id, adopted
        )
        await bridge.store.audit(
            actor_name="system",
            via="system",
            action="reconcile.rebuild",
            outcome="ok",
            detail=f"read {scanned} messages, adopted {adopted}",
        )
        return adopted

    async def _adopt(
        self,
        task_id: str,
        open_tasks: OpenSnapshot,
        channel_id: int,
        message_id: int,
        batch_id: str | None,
    ) -> Task | None:
        """Give ``task_id`` this message when the store has none; the task when adopted."""
        bridge = self.bridge
        known = await bridge.store.get_task(task_id)
        if known is not None and known.has_message:
            return None
        task = open_tasks.task(task_id)  # the one model made for it
        if task is None:
            try:
                task = await bridge.factory.get_task(task_id)
            except (FactoryError, FactoryUnavailable) as exc:
                log.warning("rebuild: task %s of message %s not read: %s", task_id, message_id, exc)
                return None
        tracked = await bridge.track(task)
        if not await bridge.store.adopt_message(task_id, channel_id, message_id, batch_id):
            return None
        await bridge.store.audit(
            actor_name="system",
            via="system",
            action="message.adopted",
            outcome="ok",
            task_id=task_id,
            batch_id=batch_id,
            detail=f"channel {channel_id} message {message_id} (rebuilt from channel history)",
        )
        if tracked.is_decided or task_id not in open_tasks:
            if batch_id is None:
                await bridge.refresh_message(task_id)
            await bridge.escalation.task_changed(task_id)
        else:
            fresh = await bridge.store.get_task(task_id)
            if fresh is not None:
                await bridge.escalation.task_opened(fresh)
        return task

    async def _restore_batch(
        self,
        refs: MessageRefs,
        tasks: Sequence[Task],
        channel_id: int,
        message_id: int,
        *,
        refresh: bool,
    ) -> None:
        """Recreate a lost batch row (items in display order) so the batch can be re-rendered."""
        store = self.bridge.store
        assert refs.batch_id is not None
        if await store.get_batch(refs.batch_id) is None:
            key = next((k for k in (batch_key(t) for t in tasks) if k), "restored")
            await store.save_batch(refs.batch_id, key, list(refs.task_ids))
            await store.set_batch_message(refs.batch_id, channel_id, message_id)
        batcher = self.bridge.batcher
        if refresh and batcher is not None:
            await batcher.refresh_batch(refs.batch_id)
