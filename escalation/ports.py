"""Ports of the escalation ladder: what its adapters (Discord, Twilio) must offer.

The core never imports discord.py or twilio. The runtime (``bot.ladder_runtime``) talks to the
outside world only through these small protocols, and the adapters translate their library's
errors into :class:`DeliveryError` / :class:`RecipientUnreachable`, so the retry and fallback
rules of the ladder (issue: escalation ladder) are written once, against these types:

* a :class:`DeliveryError` with ``retryable=True`` (Discord 5xx, Twilio 5xx or 429, a network
  error) is retried with backoff;
* :class:`RecipientUnreachable` (Discord 50007 "Cannot send messages to this user", Twilio 21610
  "Attempt to send to unsubscribed recipient") is never retried: the runtime falls back (an
  @mention in a reply instead of the DM; the next on-call operator instead of the phone);
* any other :class:`DeliveryError` is permanent: recorded as failed, not retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["DeliveryError", "Messenger", "Pager", "RecipientUnreachable"]


class DeliveryError(Exception):
    """A notification could not be delivered.

    Parameters
    ----------
    message
        What went wrong (shown in the audit trail; never contains secrets).
    code
        The provider's error code (Discord JSON ``code``, Twilio error code), if any.
    status
        HTTP status, if any.
    retryable
        True for a transient failure (5xx, 429, network): try again after a backoff.
    retry_after
        Seconds the provider asked to wait (``Retry-After``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class RecipientUnreachable(DeliveryError):
    """The recipient cannot be reached through this channel (DMs closed, phone opted out).

    Never retryable; the runtime persists it where it matters (a phone that answered STOP) and
    falls back to another channel or person.
    """

    def __init__(self, message: str, *, code: int | None = None, status: int | None = None):
        super().__init__(message, code=code, status=status, retryable=False)


class Pager(Protocol):
    """SMS and phone calls (implemented by ``bot.pager.twilio_pager.TwilioPager``)."""

    async def send_sms(self, to: str, body: str) -> str:
        """Send ``body`` (plain ASCII, ≤ 160 characters) to the E.164 number ``to``.

        Returns the provider's message id. Raises :class:`DeliveryError` or
        :class:`RecipientUnreachable`.
        """
        ...

    async def call(self, to: str, twiml: str) -> str:
        """Place a call to ``to`` that plays ``twiml`` (``<Response><Say>…``); the call id.

        Raises :class:`DeliveryError` or :class:`RecipientUnreachable`.
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class Messenger(Protocol):
    """Discord, as the ladder needs it (implemented by ``bot.discord.ladder_output``).

    Channel and message ids are Discord snowflakes; ``user_ids`` are the Discord users the
    message may ping (allowed mentions); ``everyone`` lets ``@here`` ping.
    """

    async def send_dm(self, user_id: int, content: str) -> int:
        """DM ``user_id``; the message id. :class:`RecipientUnreachable` for closed DMs."""
        ...

    async def post(
        self,
        channel_id: int,
        content: str,
        *,
        reply_to: int | None = None,
        user_ids: Sequence[int] = (),
        everyone: bool = False,
    ) -> int:
        """Post ``content`` in ``channel_id`` (as a reply to ``reply_to``); the message id."""
        ...

    def may_mention_everyone(self, channel_id: int) -> bool:
        """True when the bot's ``@here`` would ping in ``channel_id`` (MENTION_EVERYONE)."""
        ...
