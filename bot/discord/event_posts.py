"""Informational event lines (alerts, deploys): posted to each channel on its own, once each.

An informational event (:func:`bot.channel_map.event_channels`) may go to two channels: a
``deploy.failed`` to ``#factory-deploys`` and ``#factory-alerts``. :class:`EventPosts` posts its
line to each of them independently, the alerts channel first:

* a channel the bot cannot use (Discord: 10003 Unknown Channel on a new message, 50001 Missing
  Access, 50013 Missing Permissions) is reported to :class:`~bot.channel_access.ChannelAccess`
  (one alert and DM per outage, ``/healthz`` ``discord_channels`` down) and skipped: the event
  does not fail, the other channels still get the line, and the event processor is not held up;
* any other failure (a 5xx, a 429 beyond discord.py's own retries, the network) is raised once
  every channel was tried, so that the processor retries the event; the channels that took the
  line are remembered (the event's content fingerprint with the channel, the last
  :data:`POSTED_LIMIT`) and skipped on the retry, so no channel shows a line twice.

Feed lines (:mod:`bot.discord.feed`) and the factory's SLA events (:mod:`bot.sla_events`) are
posted elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.channel_access import ChannelAccess
from bot.factory.events import FactoryEvent
from bot.keyed import BoundedMap
from bot.message_faults import CHANNEL_FAULT_CODES, ChannelUnavailable
from bot.settings import Settings
from bot.store.fingerprint import event_fingerprint

__all__ = ["POSTED_LIMIT", "EventPosts"]

log = logging.getLogger(__name__)

#: (event, channel) pairs remembered as posted: an event retried later than this many posts
#: after its first attempt may show its line twice in a channel.
POSTED_LIMIT = 4096

#: ``send(channel_id, text, urgent=...)``: create a message, paced (``DiscordNotifier.send``).
Send = Callable[..., Awaitable[object]]

#: ``fault(channel_id, exc)``: Discord's channel refusal in words (``DiscordNotifier.channel_fault``).
Fault = Callable[[int, discord.HTTPException], ChannelUnavailable]


class EventPosts:
    """Posts an informational event's line to its channels (see the module docstring).

    Parameters
    ----------
    send:
        Creates one message, paced (``DiscordNotifier.send``).
    fault:
        Turns a 10003 / 50001 / 50013 refusal into a
        :class:`~bot.message_faults.ChannelUnavailable` (``DiscordNotifier.channel_fault``).
    client:
        The ``discord.Client``; its ``bridge.access`` (:class:`~bot.channel_access.ChannelAccess`,
        set by the app) is told about refused and working channels. Without one a refusal is
        only logged.
    settings:
        ``DISCORD_ALERTS_CHANNEL_ID`` (the tasks channel when unset) is posted to first.
    """

    def __init__(self, send: Send, fault: Fault, client: Any, settings: Settings) -> None:
        self._send = send
        self._fault = fault
        self._client = client
        self._alerts_channel_id = settings.alerts_channel_id
        self._posted: BoundedMap[tuple[str, int], None] = BoundedMap(POSTED_LIMIT)
        #: asked before an event's lines are posted; raises when this process no longer leads
        #: (set by the app: ``Store.check_leader``), so that a deposed leader that resumes
        #: posts nothing the new leader will post again
        self.leader_check: Callable[[], Awaitable[None]] | None = None

    def _access(self) -> ChannelAccess | None:
        access = getattr(getattr(self._client, "bridge", None), "access", None)
        return access if isinstance(access, ChannelAccess) else None

    async def post(
        self, event: FactoryEvent, channels: Sequence[int], text: str, *, urgent: bool
    ) -> None:
        """Post ``text`` once in each of ``channels`` (the alerts channel first).

        Parameters
        ----------
        event : FactoryEvent
            The event; its content fingerprint (:func:`bot.store.fingerprint.event_fingerprint`,
            the store's identity of an event) tells its retries apart from other events.
        channels : sequence of int
            The channels (:func:`bot.channel_map.event_channels`, feed excluded).
        text : str
            The line (:func:`bot.discord.notifier.event_text`).
        urgent : bool
            Take the channel's next free slot (alerts; :meth:`DiscordNotifier.send`).

        Raises
        ------
        bot.leadership.lease.NotLeader
            When this process no longer leads (:attr:`leader_check`): nothing was posted.
        Exception
            The first failure that is not a channel refusal (e.g. ``discord.HTTPException``
            503), after every channel was tried; a retry posts only where it failed. A refusal
            (Discord: error code 10003, 50001 or 50013) is reported to ``ChannelAccess`` and
            never raised.
        """
        if not channels:
            return
        event_key = event_fingerprint(event.raw)
        failure: Exception | None = None
        ordered = sorted(channels, key=lambda channel_id: channel_id != self._alerts_channel_id)
        if self.leader_check is not None and any(
            (event_key, channel_id) not in self._posted for channel_id in ordered
        ):
            await self.leader_check()  # NotLeader: the event stays for the new leader
        for channel_id in ordered:
            if (event_key, channel_id) in self._posted:
                continue  # took this line on an earlier attempt of the event
            try:
                await self._send(channel_id, text, urgent=urgent)
            except discord.HTTPException as exc:
                if exc.code in CHANNEL_FAULT_CODES:
                    await self._lost(self._fault(channel_id, exc))
                    continue
                failure = failure or exc
                continue
            except Exception as exc:  # the network: retried with the event
                failure = failure or exc
                continue
            self._posted[(event_key, channel_id)] = None
            access = self._access()
            if access is not None:
                await access.reached(channel_id)
        if failure is not None:
            raise failure

    async def _lost(self, fault: ChannelUnavailable) -> None:
        """The line cannot be posted in ``fault.channel_id``: tell ``ChannelAccess`` (once per
        outage), never fail the event."""
        access = self._access()
        if access is None:
            log.warning("event line not posted in channel %s: %s", fault.channel_id, fault.reason)
            return
        log.warning("event line not posted: %s (Discord %s)", fault.reason, fault.code)
        await access.lost(fault)
