"""The :class:`escalation.ports.Pager` adapter: SMS and calls through the real twilio client.

Uses ``twilio.rest.Client`` with ``AsyncTwilioHttpClient`` (aiohttp) and
:func:`bot.pager.twilio_base.configure_client` so ``TWILIO_API_BASE_URL`` is honoured (the
emulator in tests). Twilio's errors are translated for the ladder (contract Appendix B):

* 21610 "Attempt to send to unsubscribed recipient" (the person replied STOP) →
  :class:`~escalation.ports.RecipientUnreachable` (the runtime persists the phone as
  unreachable and tries the next on-call operator);
* 429 and 5xx, and network errors → :class:`~escalation.ports.DeliveryError` with
  ``retryable=True`` (the runtime retries with backoff);
* anything else (bad number 21211, auth 20003 …) → a permanent :class:`DeliveryError`.

The twilio library's own retries are off (``max_retries=None``): one place retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from bot.pager.twilio_base import configure_client
from bot.pager.twiml import gather_twiml, render_twiml
from escalation.notices import CallScript
from escalation.ports import DeliveryError, RecipientUnreachable

__all__ = [
    "GATHER_PATH",
    "STATUS_EVENTS",
    "STATUS_PATH",
    "UNSUBSCRIBED_CODES",
    "TwilioPager",
    "callback_url",
    "translate",
]

log = logging.getLogger(__name__)

#: Twilio error codes meaning "this number does not want messages from us" (21610: the
#: recipient replied STOP).
UNSUBSCRIBED_CODES = frozenset({21610})

#: The bridge's ``<Gather>`` action and call status callback (``bot.pager.inbound``).
GATHER_PATH = "/twilio/voice/gather"
STATUS_PATH = "/twilio/voice/status"

#: Call progress events asked for (Twilio: ``StatusCallbackEvent``); ``completed`` carries the
#: final ``CallStatus`` (``completed``, ``no-answer``, ``busy``, ``failed``, ``canceled``).
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")


def callback_url(public_url: str, path: str, task_ids: Sequence[str]) -> str:
    """``public_url`` + ``path`` + ``?tasks=a,b`` (task ids are ``[A-Za-z0-9_-]``, contract)."""
    return f"{public_url}{path}?{urlencode({'tasks': ','.join(task_ids)}, safe=',')}"


def translate(exc: Exception) -> DeliveryError:
    """Map a twilio / network exception onto the ladder's error types."""
    if isinstance(exc, TwilioRestException):
        status = int(exc.status or 0)
        code = int(exc.code) if exc.code is not None else None
        text = f"Twilio {status} {code}: {exc.msg}"
        if code in UNSUBSCRIBED_CODES:
            return RecipientUnreachable(text, code=code, status=status)
        return DeliveryError(
            text, code=code, status=status, retryable=status == 429 or status >= 500
        )
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return DeliveryError(f"Twilio unreachable: {exc!r}", retryable=True)
    if isinstance(exc, TwilioException):
        return DeliveryError(f"Twilio error: {exc}", retryable=False)
    return DeliveryError(f"unexpected error: {exc!r}", retryable=False)


class TwilioPager:
    """SMS and calls through Twilio (settings ``TWILIO_*``).

    Parameters
    ----------
    account_sid, auth_token, from_number:
        ``TWILIO_ACCOUNT_SID``, ``TWILIO_AUTH_TOKEN`` (secret; never logged),
        ``TWILIO_FROM_NUMBER`` (E.164).
    base_url:
        ``TWILIO_API_BASE_URL`` (``https://api.twilio.com``; the emulator in tests).
    timeout_seconds:
        Per-request timeout.
    observe:
        Called with ``(kind, status)`` after each request: ``kind`` ``sms``/``call``,
        ``status`` Twilio's HTTP status (``201`` when created) or ``error`` (metrics).
    public_url:
        ``BRIDGE_PUBLIC_URL``: when set, calls are two-way (README "Phone"): their TwiML gathers a
        key (``<Gather action=public_url/twilio/voice/gather?tasks=…>``) and they are placed
        with ``StatusCallback=public_url/twilio/voice/status?tasks=…``.

    Notes
    -----
    The aiohttp session is created on first use, inside the running event loop (the
    twilio modules are imported with this one, so the first SMS does not pay for it).
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str,
        *,
        base_url: str,
        timeout_seconds: float = 10.0,
        observe: Callable[[str, str], None] | None = None,
        public_url: str | None = None,
    ) -> None:
        self._observe = observe
        self.public_url = public_url
        self._sid = account_sid
        self._token = auth_token
        self.from_number = from_number
        self.base_url = base_url
        self.timeout_seconds = timeout_seconds
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    def _ensure(self) -> Client:
        if self._client is None:
            self._http = AsyncTwilioHttpClient(timeout=self.timeout_seconds)
            client = Client(self._sid, self._token, http_client=self._http)
            configure_client(client, self.base_url)
            self._client = client
        return self._client

    async def warm_up(self) -> None:
        """Build the client and load the Messages/Calls modules now (no request is made), so
        the first page is not late by the import time."""
        client = self._ensure()
        _ = (client.messages, client.calls)

    async def send_sms(self, to: str, body: str) -> str:
        """Send one SMS; the message SID.

        Raises
        ------
        escalation.ports.RecipientUnreachable
            Twilio 21610 (STOP).
        escalation.ports.DeliveryError
            Any other failure (``retryable`` for 429, 5xx, network).
        """
        try:
            message: Any = await self._ensure().messages.create_async(
                to=to, from_=self.from_number, body=body
            )
        except Exception as exc:
            raise self._failed("sms", exc) from exc
        self._count("sms", "201")
        return str(message.sid)

    async def call(self, to: str, script: CallScript) -> str:
        """Place one call saying ``script`` (as TwiML, :func:`bot.pager.twiml.render_twiml`,
        or :func:`bot.pager.twiml.gather_twiml` with a status callback when two-way); the
        call SID (errors as :meth:`send_sms`)."""
        options: dict[str, Any] = {"twiml": render_twiml(script)}
        if self.public_url and script.task_ids:
            options = {
                "twiml": gather_twiml(
                    script, callback_url(self.public_url, GATHER_PATH, script.task_ids)
                ),
                "status_callback": callback_url(self.public_url, STATUS_PATH, script.task_ids),
                "status_callback_event": list(STATUS_EVENTS),
                "status_callback_method": "POST",
            }
        try:
            call: Any = await self._ensure().calls.create_async(
                to=to, from_=self.from_number, **options
            )
        except Exception as exc:
            raise self._failed("call", exc) from exc
        self._count("call", "201")
        return str(call.sid)

    def _count(self, kind: str, status: str) -> None:
        if self._observe is not None:
            self._observe(kind, status)

    def _failed(self, kind: str, exc: Exception) -> Exception:
        error = translate(exc)
        status = getattr(error, "status", None)
        self._count(kind, str(status) if status else "error")
        return error

    async def aclose(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            try:
                await self._http.close()
            except Exception:  # pragma: no cover - closing is best effort
                log.debug("closing the Twilio HTTP client failed", exc_info=True)
            self._http = None
            self._client = None
