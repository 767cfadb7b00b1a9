"""A deleted batch message comes back: its items that still need a decision are shown again.

A person deletes a batch message (gateway ``MESSAGE_DELETE``) or its next edit answers 10008
Unknown Message, or 10003 Unknown Channel because the channel was deleted with it (Discord
"JSON Error Codes"). When an item of the batch still needs a decision, the batch is posted again
ONCE per lost message, in the tasks channel configured now (``DISCORD_TASKS_CHANNEL_ID``: a
deleted channel recreated with a new id), with :data:`bot.message_faults.REPOSTED_NOTE`, the
batch row and its items' rows point at the new message, and each open item is audited
``message.reposted`` (with the batch id). A batch whose items are all decided is not reposted.
The buttons carry the batch id, so they work on the new message as they did on the old one.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from bot.discord.batch_views import render_batch
from bot.keyed import KeyedLocks
from bot.message_faults import REPOSTED_NOTE

if TYPE_CHECKING:
    from bot.discord.batch_embeds import BatchItem
    from bot.discord.notifier import DiscordNotifier
    from bot.store import Store


class RepostingRuntime(Protocol):
    """What a repost needs of the batching runtime (``BatchingRuntime`` has it; a protocol so
    that this module does not import the runtime that calls it)."""

    @property
    def store(self) -> Store:
        """The bridge's store."""
        ...

    @property
    def notifier(self) -> DiscordNotifier:
        """The Discord side."""
        ...

    @property
    def channel_id(self) -> int:
        """``DISCORD_TASKS_CHANNEL_ID``: where the new message goes."""
        ...

    async def post_in(self, channel_id: int, content: str | None, **rendered: Any) -> Any:
        """Create a message (paced); raises ``ChannelUnavailable`` on 10003 / 50001 / 50013."""
        ...

    async def items(self, batch_id: str) -> list[BatchItem]:
        """The batch's items, re-read from the store."""
        ...


__all__ = ["RepostingRuntime", "repost_batch"]

log = logging.getLogger(__name__)

_locks: KeyedLocks[str] = KeyedLocks()


async def repost_batch(
    runtime: RepostingRuntime, batch_id: str, message_id: int, *, why: str
) -> int | None:
    """Post batch ``batch_id`` again because its message ``message_id`` is gone.

    Serialised per batch; the batch row is re-read inside, so a gateway event and a failed
    edit about the same message repost once. The new message goes to ``runtime.channel_id``
    (the old channel may be gone).

    Returns
    -------
    int or None
        The new message id, or ``None`` when nothing was posted (the batch shows another
        message already, or every item is decided).

    Raises
    ------
    bot.message_faults.ChannelUnavailable
        Discord refused the new message (10003 Unknown Channel, 50001 Missing Access, 50013
        Missing Permissions): nothing changed, the caller retries.
    """
    store = runtime.store
    async with _locks(batch_id):
        record = await store.get_batch(batch_id)
        if record is None or record.message_id != message_id or record.channel_id is None:
            return None
        items = await runtime.items(batch_id)
        open_ids = [i.task_id for i in items if not i.tracked.is_decided]
        if not open_ids:
            for item in items:
                await store.audit(
                    actor_name="system",
                    via="discord",
                    action="message.deleted",
                    outcome="not reposted",
                    task_id=item.task_id,
                    batch_id=batch_id,
                    detail=f"{why}: batch message {message_id}; every item is decided",
                )
            return None
        rendered = render_batch(batch_id, items)
        channel_id = runtime.channel_id
        message = await runtime.post_in(channel_id, REPOSTED_NOTE, **rendered)
        await store.set_batch_message(batch_id, channel_id, message.id)
        for item in items:
            await store.move_message(item.task_id, message_id, channel_id, message.id)
        log.info("batch %s reposted (%s): message %s → %s", batch_id, why, message_id, message.id)
        for task_id in open_ids:
            await store.audit(
                actor_name="system",
                via="discord",
                action="message.reposted",
                outcome="ok",
                task_id=task_id,
                batch_id=batch_id,
                detail=f"{why}: batch message {message_id} → message {message.id}",
            )
        return message.id
