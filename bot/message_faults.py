"""What can happen to a message the bridge posted, in the bridge's own words.

The Discord adapter (:class:`bot.discord.notifier.DiscordNotifier`) turns Discord's error codes
into these exceptions, so that :class:`bot.bridge.Bridge` reacts without importing discord.py.
Discord's codes ("JSON Error Codes", https://discord.com/developers/docs/topics/opcodes-and-
status-codes#json): 10008 Unknown Message, 10003 Unknown Channel, 50001 Missing Access,
50013 Missing Permissions.
"""

from __future__ import annotations

__all__ = [
    "CHANNEL_FAULT_CODES",
    "REPOSTED_NOTE",
    "ChannelUnavailable",
    "MessageGone",
]

#: Shown above a task message posted again because the earlier one was deleted.
REPOSTED_NOTE = "(reposted: the earlier message was deleted)"

#: Discord's codes for a channel the bot cannot use: Unknown Channel, Missing Access,
#: Missing Permissions.
CHANNEL_FAULT_CODES = frozenset({10003, 50001, 50013})


class MessageGone(Exception):
    """The message is gone: a person deleted it (Discord: 404 / 10008 Unknown Message), or its
    channel was deleted with it (404 / 10003 Unknown Channel on an edit of the message).

    Either way the message will never come back: the task is shown anew in the tasks channel
    configured now (``DISCORD_TASKS_CHANNEL_ID``), once per lost message.

    Parameters
    ----------
    channel_id, message_id:
        The message that is gone.
    reason:
        Discord's words for it, as audited: ``"Unknown Message"`` (10008) or
        ``"Unknown Channel"`` (10003).
    """

    def __init__(self, channel_id: int, message_id: int, reason: str = "Unknown Message") -> None:
        super().__init__(f"message {message_id} in channel {channel_id} is gone ({reason})")
        self.channel_id = channel_id
        self.message_id = message_id
        self.reason = reason


class ChannelUnavailable(Exception):
    """The bot cannot post or edit in a channel (Discord: 10003, 50001 or 50013).

    10003 Unknown Channel is a channel fault only for a *new* message (the configured channel
    does not exist); on an edit it means the message is gone with its channel
    (:class:`MessageGone`).

    Parameters
    ----------
    channel_id:
        The channel.
    code:
        Discord's JSON error code.
    reason:
        What an operator reads, e.g. ``"no Send Messages in #factory-tasks"``.
    """

    def __init__(self, channel_id: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.channel_id = channel_id
        self.code = code
        self.reason = reason
