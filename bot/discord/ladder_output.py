"""The :class:`escalation.ports.Messenger` adapter: the ladder's DMs, replies and alerts.

Built on :class:`bot.discord.notifier.DiscordNotifier` (its per-channel pacer keeps message
creation within Discord's rate). discord.py's errors are translated for the ladder:

* 403 with JSON code 50007 ("Cannot send messages to this user": DMs closed) →
  :class:`~escalation.ports.RecipientUnreachable` (the runtime @mentions the person in a reply
  to the task message instead);
* 5xx and 429 (discord.py already retried them) and network errors → retryable
  :class:`~escalation.ports.DeliveryError`;
* other 4xx → permanent :class:`DeliveryError`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence

import aiohttp
import discord

from bot.discord.limits import NO_PINGS, fit_content
from bot.discord.notifier import DiscordNotifier
from escalation.ports import DeliveryError, RecipientUnreachable

__all__ = [
    "DM_CLOSED_CODE",
    "DiscordMessenger",
    "own_here_only",
    "translate",
]

log = logging.getLogger(__name__)

#: Discord JSON error code: "Cannot send messages to this user".
DM_CLOSED_CODE = 50007

_EVERYONE_TOKEN = re.compile(r"@(?:everyone|here)", re.IGNORECASE)


def own_here_only(content: str) -> bool:
    """True when ``content``'s only @everyone/@here token is one ``@here``: the bridge's own.

    Factory text is escaped before it goes into a message (:mod:`escalation.markup`), so the
    only token left is the one the ladder wrote; anything else means some text was not escaped,
    and the message is then sent without the @here ping rather than pinging everyone.
    """
    return _EVERYONE_TOKEN.findall(content) == ["@here"]


def translate(exc: Exception) -> DeliveryError:
    """Map a discord.py / network exception onto the ladder's error types."""
    if isinstance(exc, discord.HTTPException):
        if exc.status == 403 and exc.code == DM_CLOSED_CODE:
            return RecipientUnreachable(
                f"Discord 403 {exc.code}: {exc.text}", code=exc.code, status=exc.status
            )
        retryable = exc.status == 429 or exc.status >= 500
        return DeliveryError(
            f"Discord {exc.status} {exc.code}: {exc.text}",
            code=exc.code,
            status=exc.status,
            retryable=retryable,
        )
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return DeliveryError(f"Discord unreachable: {exc!r}", retryable=True)
    return DeliveryError(f"unexpected error: {exc!r}")


class DiscordMessenger:
    """DMs, posts and replies for the escalation ladder.

    Parameters
    ----------
    notifier:
        The bridge's notifier (paced sends, the client, the guild id).
    """

    def __init__(self, notifier: DiscordNotifier) -> None:
        self.notifier = notifier
        self.client = notifier.client

    async def send_dm(self, user_id: int, content: str) -> int:
        """DM ``user_id`` (no pings needed in a DM); the message id.

        Raises
        ------
        escalation.ports.RecipientUnreachable
            The user closed their DMs (50007).
        escalation.ports.DeliveryError
            Any other failure.
        """
        try:
            channel = await self.client.create_dm(discord.Object(id=user_id))
            slot = await self.notifier.pacer.acquire(channel.id)
            try:
                message = await channel.send(fit_content(content), allowed_mentions=NO_PINGS)
            finally:
                self.notifier.pacer.mark_sent(slot)
        except Exception as exc:
            raise translate(exc) from exc
        return message.id

    async def post(
        self,
        channel_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        user_ids: Sequence[int] = (),
        everyone: bool = False,
    ) -> int:
        """Post in ``channel_id`` (a reply to ``reply_to``), pinging only ``user_ids`` and,
        when ``everyone``, the ladder's own ``@here``; the message id.

        ``everyone`` is honoured only when the content's one @everyone/@here token is a single
        ``@here`` (:func:`own_here_only`); otherwise nobody but ``user_ids`` is pinged and the
        mismatch is logged. Roles are never pinged.
        """
        if everyone and not own_here_only(content):
            log.error("@here refused: the content carries other @everyone/@here tokens")
            everyone = False
        allowed = discord.AllowedMentions(
            everyone=everyone,
            users=[discord.Object(id=u) for u in user_ids],
            roles=False,
            replied_user=False,
        )
        try:
            message = await self.notifier.send(
                channel_id,
                content,
                allowed_mentions=allowed,
                reference=(channel_id, reply_to) if reply_to is not None else None,
                urgent=everyone,  # an SLA warning or breach does not queue behind a burst
            )
        except Exception as exc:
            raise translate(exc) from exc
        return message.id

    def may_mention_everyone(self, channel_id: int) -> bool:
        """True when the bot has MENTION_EVERYONE in ``channel_id`` (unknown: assume yes)."""
        guild = self.client.get_guild(self.notifier.settings.discord_guild_id)
        me = guild.me if guild is not None else None
        if guild is None or me is None:
            return True
        channel = guild.get_channel(channel_id)
        perms = channel.permissions_for(me) if channel is not None else me.guild_permissions
        return bool(perms.mention_everyone)
