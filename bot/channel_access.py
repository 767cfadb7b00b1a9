"""Channels the bridge cannot use: tell people, report it, and resume by itself.

When Discord refuses a task message or a batch message because the channel is gone or the bot
lost access or a permission (Discord: 10003 Unknown Channel on a new message, 50001 Missing
Access, 50013 Missing Permissions, see :mod:`bot.message_faults`), the task (or the batch's
tasks) stays pending in the store and (an informational event line refused the same way is
not posted there, and only reported: :mod:`bot.discord.event_posts`):

* ONE alert per outage goes to ``DISCORD_ALERTS_CHANNEL_ID`` (unless that is the broken channel)
  and a DM to each on-call admin of the roster (``on_call`` and ``admin``);
* ``/healthz`` reports the part ``discord_channels`` as ``"down: <reason>"``
  (:meth:`ChannelAccess.health`);
* every ``DISCORD_CHANNEL_RETRY_SECONDS`` the waiting tasks and batches are posted (or their
  message edited) again; the first request Discord accepts in the channel ends the outage, with
  one "restored" alert and DM. Only an accepted request counts (:meth:`ChannelAccess.reached`):
  an edit still queued, dropped or not needed proves nothing, so an outage never flaps.

Every outage and recovery is audited (``channel.unavailable``, ``channel.restored``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.message_faults import ChannelUnavailable
from bot.periodic import Periodic
from bot.roster import Roster
from bot.store import Store

__all__ = ["ChannelAccess"]

log = logging.getLogger(__name__)

#: ``send(channel_id, text)`` / ``send_dm(discord_user_id, text)``; both may raise.
Send = Callable[[int, str], Awaitable[object]]

#: Retries one waiting batch message (posts, edits or reposts it again).
Retry = Callable[[], Awaitable[object]]


def _key(task_id: str | None, batch_id: str | None) -> str:
    """What waits: a task id, or ``"batch:<batch id>"`` for a batch message."""
    if task_id is not None:
        return task_id
    if batch_id is None:
        raise ValueError("a task id or a batch id is needed")
    return f"batch:{batch_id}"


class ChannelAccess:
    """Tracks the channels the bridge cannot use and retries what waits for them (a feature).

    Parameters
    ----------
    store:
        The audit trail.
    roster:
        Who gets a DM: operators with ``on_call`` and ``admin`` and a Discord id.
    send, send_dm:
        Post a plain message in a channel; DM a person (``DiscordNotifier.send`` / ``send_dm``).
    alerts_channel_id:
        ``DISCORD_ALERTS_CHANNEL_ID`` (the tasks channel when unset).
    retry:
        ``retry(task_id)`` posts the task or edits its message again (``Bridge.show_again``);
        it reports its own outcome through :meth:`lost` / :meth:`reached`.
    interval_seconds:
        ``DISCORD_CHANNEL_RETRY_SECONDS``: time between two retries of the waiting tasks.
    """

    def __init__(
        self,
        *,
        store: Store,
        roster: Roster,
        send: Send,
        send_dm: Send,
        alerts_channel_id: int,
        retry: Callable[[str], Awaitable[None]],
        interval_seconds: float,
    ) -> None:
        self._store = store
        self._roster = roster
        self._send = send
        self._send_dm = send_dm
        self._alerts_channel_id = alerts_channel_id
        self._retry = retry
        #: channel id → why it cannot be used
        self._down: dict[int, str] = {}
        #: task id (or ``batch:<id>``) → the channel it waits for
        self._waiting: dict[str, int] = {}
        #: ``batch:<id>`` → how to retry it (a task is retried with ``retry``)
        self._retries: dict[str, Retry] = {}
        self._rounds = Periodic(
            "channel-access retry", self._retry_if_waiting, interval_seconds, wait_first=True
        )

    def health(self) -> bool | str:
        """``/healthz`` part ``discord_channels``: True, or the reasons (``"no Send Messages in
        #factory-tasks"``; ``/healthz`` shows ``"down: <reasons>"``)."""
        if not self._down:
            return True
        return "; ".join(self._down[c] for c in sorted(self._down))

    @property
    def waiting(self) -> list[str]:
        """Task ids (and ``"batch:<batch id>"`` of batch messages) waiting for a channel to be
        usable again."""
        return list(self._waiting)

    def forget(self, task_id: str | None = None, *, batch_id: str | None = None) -> None:
        """Stop retrying ``task_id`` or batch ``batch_id`` (it needs no message any more); the
        outage itself is not over (nothing was accepted by Discord)."""
        key = _key(task_id, batch_id)
        self._waiting.pop(key, None)
        self._retries.pop(key, None)

    async def lost(
        self,
        fault: ChannelUnavailable,
        task_id: str | None = None,
        *,
        batch_id: str | None = None,
        retry: Retry | None = None,
    ) -> None:
        """A post or edit of ``task_id`` (or of batch ``batch_id``'s message, or of an
        informational event line) was refused: remember it, alert once per outage.

        Parameters
        ----------
        fault : ChannelUnavailable
            Discord's refusal (10003, 50001 or 50013) in words.
        task_id, batch_id : str, optional
            What waits (at most one of them): a task is retried with ``Bridge.show_again``.
            Neither for an event line (:mod:`bot.discord.event_posts`): nothing waits, the
            channel is only reported down until Discord accepts a request there.
        retry : callable, optional
            For a batch: ``await retry()`` posts, edits or reposts its message again every
            ``DISCORD_CHANNEL_RETRY_SECONDS`` and reports back through :meth:`lost` /
            :meth:`reached` / :meth:`forget`.
        """
        waits = task_id is not None or batch_id is not None
        if waits:
            key = _key(task_id, batch_id)
            self._waiting[key] = fault.channel_id
            if retry is not None:
                self._retries[key] = retry
        first = fault.channel_id not in self._down
        self._down[fault.channel_id] = fault.reason
        if not first:
            return
        log.error("channel %s cannot be used: %s", fault.channel_id, fault.reason)
        then = (
            "Tasks stay pending and are posted as soon as access is back."
            if waits
            else "Event lines meant for it are dropped until access is back."
        )
        text = (
            f"⚠️ Factory Bridge cannot use a channel: {fault.reason} (Discord {fault.code}). {then}"
        )
        told = await self._tell(text, broken=fault.channel_id)
        await self._store.audit(
            actor_name="bridge",
            via="system",
            action="channel.unavailable",
            outcome="alerted" if told else "failed",
            task_id=task_id,
            batch_id=batch_id,
            detail=f"{fault.reason} (Discord {fault.code}) → {', '.join(told) or 'nobody'}",
        )

    async def reached(
        self, channel_id: int, task_id: str | None = None, *, batch_id: str | None = None
    ) -> None:
        """Discord accepted a post or edit in ``channel_id`` (for ``task_id`` or batch
        ``batch_id``, which stops waiting): an outage there is over, announced once.

        Call it only for a request Discord answered with success; a call that returned without
        sending anything (an edit queued, dropped or not needed) proves nothing.
        """
        if task_id is not None or batch_id is not None:
            self.forget(task_id, batch_id=batch_id)
        reason = self._down.pop(channel_id, None)
        if reason is None:
            return
        log.warning("channel %s can be used again (was: %s)", channel_id, reason)
        text = f"✅ Factory Bridge can use the channel again (was: {reason})."
        told = await self._tell(text, broken=None)
        await self._store.audit(
            actor_name="bridge",
            via="system",
            action="channel.restored",
            outcome="alerted" if told else "failed",
            task_id=task_id,
            batch_id=batch_id,
            detail=f"was: {reason} → {', '.join(told) or 'nobody'}",
        )

    async def _tell(self, text: str, *, broken: int | None) -> list[str]:
        """Post ``text`` in the alerts channel (unless it is ``broken``) and DM the on-call
        admins; returns who was told."""
        told: list[str] = []
        if self._alerts_channel_id != broken and self._alerts_channel_id not in self._down:
            try:
                await self._send(self._alerts_channel_id, text)
            except Exception as exc:  # an alert must never break the post that failed
                log.error("channel alert could not be posted: %s", exc)
            else:
                told.append("alerts channel")
        for op in self._roster.operators:
            if not (op.on_call and op.admin and op.discord_user_id):
                continue
            try:
                await self._send_dm(int(op.discord_user_id), text)
            except Exception as exc:
                log.error("channel alert DM to %s failed: %s", op.name, exc)
            else:
                told.append(op.name)
        return told

    async def retry_waiting(self) -> None:
        """Post or edit every waiting task and batch message again (each reports back through
        :meth:`lost` / :meth:`reached`)."""
        for key in list(self._waiting):
            retry = self._retries.get(key)
            try:
                await (retry() if retry is not None else self._retry(key))
            except Exception:
                log.exception("retry of %s failed", key)

    async def start(self) -> None:
        """Start the periodic retry in the background."""
        self._rounds.start()

    async def stop(self) -> None:
        """Stop retrying (waiting tasks stay pending in the store)."""
        await self._rounds.stop()

    async def _retry_if_waiting(self) -> None:
        if self._waiting:
            await self.retry_waiting()
