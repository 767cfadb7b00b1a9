"""WebSocket intake: the factory's event stream for bridges that cannot receive webhooks.

With ``FACTORY_WS_URL`` set, the bridge keeps one WebSocket open to the factory (contract §1.6):

- it connects with the API key in the ``X-API-Key`` header (never in the URL, so the key does
  not end up in access logs) and, when ``FACTORY_WS_TOKEN`` is set, also the contract's way:
  ``?token=<jwt>`` in the URL (§1.6 "Connect: wss://…/v1/ws?token=<jwt>"); the URL is logged
  without its query and the token (set either way) is redacted, raw or percent-encoded, from
  every log line. Then it sends ``{"type": "subscribe", "channels": ["tasks:*", …]}`` and
  waits :data:`SUBSCRIBE_TIMEOUT_SECONDS` for ``subscribed`` (the handshake itself
  :data:`HANDSHAKE_TIMEOUT_SECONDS`); a missing answer is a lost connection;
- it answers the server's ``{"type": "ping"}`` with ``{"type": "pong"}`` (and aiohttp answers
  protocol-level pings and sends its own heartbeat, so a dead TCP connection is noticed);
- every ``WsEvent`` frame (text, or binary in UTF-8) of a type the bridge handles is validated
  and **stored** in the event table of webhooks, then the event processor is woken: both
  intakes go one path. A frame has no event id, so its id is ``ws:`` + the SHA-256 of its
  canonical JSON (:func:`bot.store.fingerprint.event_fingerprint`); a frame delivered twice is
  stored once. Types the bridge does not handle are ignored; malformed frames (not UTF-8, not
  JSON, nested too deep, not an object, an invalid event) are logged, counted as rejected and
  dropped, and the stream goes on; a frame over :data:`MAX_MESSAGE_BYTES` (close 1009) is
  rejected too and the connection re-opened. An ``error`` frame of any shape is logged (§1.6
  gives ``{"type": "error", "error": {"code", "message"}}``; anything else as it came);
- when the connection drops or cannot be opened it reconnects for ever, with exponential
  backoff: ``FACTORY_WS_RECONNECT_BASE_SECONDS`` (1 s) doubling up to 30 s, with jitter
  (contract §4.5; the desktop client gives up after 10 retries, a service must not). The
  backoff starts again from the base only after a connection stayed subscribed for
  :data:`STABLE_CONNECTION_SECONDS` (30 s): a server that accepts, subscribes and closes at
  once is retried with growing delays, not every second. After every successful subscription
  ``on_subscribed`` is called: the bridge reconciles then, so events sent while it was
  disconnected are not lost.
- when the factory **refuses** the bridge — a handshake answered 401/403, an ``error`` frame
  with code ``UNAUTHORIZED`` or ``FORBIDDEN`` before the subscription is confirmed (contract
  §1.6 "On connect error", codes §1.3; the bridge then closes the connection), or a close with
  code 1008 (RFC 6455 §7.4.1, policy violation) or 4001/4003 (RFC 6455 §7.4.2, private range,
  used as "401"/"403") — retrying alone fixes nothing: the key or token is wrong. It still
  retries at the capped backoff (a rotated key starts working without a restart), but the
  first refusal of an outage is logged at ERROR with the reason and posted once to the alerts
  channel (``alert``), and a recovery line is posted once it is subscribed again.
  :meth:`WebSocketIntake.advisory_health` gives ``/healthz`` ``{"websocket": True}`` while
  subscribed, else the reason (advisory, like Redis: the reconciliation still brings tasks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp

from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.factory.strict_json import UnacceptableJson, document_needs_check, loads
from bot.factory.ws_frames import (
    FrameRejected,
    describe_error,
    frame_text,
    redactor,
    refusal_code,
    short,
    url_for_log,
)
from bot.store import Recorded, Store
from bot.store.fingerprint import event_fingerprint

__all__ = [
    "DEFAULT_CHANNELS",
    "HANDSHAKE_TIMEOUT_SECONDS",
    "MAX_MESSAGE_BYTES",
    "MAX_RECONNECT_DELAY_SECONDS",
    "REFUSAL_CLOSE_CODES",
    "STABLE_CONNECTION_SECONDS",
    "SUBSCRIBE_TIMEOUT_SECONDS",
    "WebSocketIntake",
    "reconnect_delay",
]

log = logging.getLogger(__name__)

#: Channels the bridge subscribes to (contract §1.6 ``WsChannel``).
DEFAULT_CHANNELS: tuple[str, ...] = ("tasks:*", "pipeline:*", "deploys:*", "agents:*")

#: Longest wait between two connection attempts (contract §4.5 ``maxRetryDelayMs`` 30000).
MAX_RECONNECT_DELAY_SECONDS = 30.0

#: A connection subscribed at least this long (seconds) counts as stable: the reconnect backoff
#: after it starts again from the base. Equal to the longest delay, so a server that drops every
#: connection soon after subscribing is never retried more often than the backoff allows.
STABLE_CONNECTION_SECONDS = 30.0

#: Longest wait (seconds) for the handshake (TCP connect to ``101``); then it is a lost connection.
HANDSHAKE_TIMEOUT_SECONDS = 10.0

#: Longest wait (seconds) for ``subscribed`` after ``subscribe`` (§1.6); then it is a lost one.
SUBSCRIBE_TIMEOUT_SECONDS = 10.0

#: Largest frame accepted, bytes (4 MiB, aiohttp's default, named): at least the 1 MiB a
#: webhook body may have. A larger frame closes the connection (1009), logged and rejected.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024

#: Share of the delay taken off at random so that many bridges do not reconnect in step.
JITTER_FRACTION = 0.25

#: Handshake statuses that refuse the bridge's credentials (contract §1.3: 401 ``UNAUTHORIZED``,
#: 403 ``FORBIDDEN``).
REFUSAL_STATUSES = frozenset({401, 403})
#: Close codes that refuse the bridge: 1008 policy violation (RFC 6455 §7.4.1) and 4001/4003,
#: private-use codes (RFC 6455 §7.4.2) servers close with for 401/403.
REFUSAL_CLOSE_CODES = frozenset({1008, 4001, 4003})

#: Messages that end aiohttp's stream of a connection.
_CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED)


def reconnect_delay(
    attempt: int,
    *,
    base_seconds: float = 1.0,
    max_seconds: float = MAX_RECONNECT_DELAY_SECONDS,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first after a drop).

    ``base_seconds · 2^attempt``, at most ``max_seconds``, minus up to 25 % jitter
    (contract §4.5: 1 s doubling each retry, at most 30 s). The result lies in
    ``[0.75·d, d]`` where ``d`` is the capped exponential delay, so it never exceeds
    ``max_seconds``.

    Parameters
    ----------
    attempt:
        Attempts made since the last stable connection (0-based; see
        :data:`STABLE_CONNECTION_SECONDS`).
    base_seconds, max_seconds:
        First delay and cap, seconds.
    rand:
        Returns a float in ``[0, 1)``; injected by tests.
    """
    exponent = min(max(attempt, 0), 32)  # 2**32 s is past any cap; avoids float overflow
    delay = min(base_seconds * (2.0**exponent), max_seconds)
    return delay * (1.0 - JITTER_FRACTION * rand())


class WebSocketIntake:
    """Keeps the factory WebSocket open and stores every event it sends.

    Parameters
    ----------
    url:
        ``FACTORY_WS_URL`` (``ws://`` or ``wss://``).
    api_key:
        ``FACTORY_API_KEY``, sent as ``X-API-Key`` (contract §1.2).
    token:
        ``FACTORY_WS_TOKEN``: a JWT issued by the factory, sent as the ``token`` query
        parameter (contract §1.6); ``None`` sends the API key only.
    store:
        Events are stored in its event table (the processor's queue).
    on_stored:
        Called with ``(event_id, parsed event)`` once an event is stored as new, after the
        commit (the processor's ``submit``).
    on_subscribed:
        Called after every successful subscription, first connection included (the
        reconciler's ``trigger``).
    channels:
        Channels to subscribe to.
    reconnect_base_seconds:
        First reconnect delay (``FACTORY_WS_RECONNECT_BASE_SECONDS``).
    heartbeat_seconds:
        Interval of aiohttp's protocol-level pings; a connection whose pong does not come
        back within half of it is closed and re-opened.
    on_outcome:
        Called with ``("websocket", outcome)`` per frame that carries an event: ``accepted``,
        ``duplicate``, ``ignored`` (a type the bridge does not handle) or ``rejected`` (a
        malformed frame): ``factory_bridge_events_total``; optional.
    sleep:
        ``asyncio.sleep``, awaited between connection attempts (tests inject one).
    clock:
        Monotonic seconds, to tell how long a connection stayed subscribed (tests inject one).
    alert:
        Called with ``(what, text)`` to post ``text`` once in the alerts channel
        (:meth:`bot.self_watch.SelfWatch.announce`): ``websocket_refused`` at the first
        refusal of an outage, ``websocket_recovered`` once subscribed again; optional.
    handshake_timeout, subscribe_timeout:
        Seconds to wait for the handshake and then for the ``subscribed`` frame (§1.6);
        either missing is a lost connection, retried with backoff (§4.5).
    """

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        token: str | None = None,
        store: Store,
        on_stored: Callable[[str, FactoryEvent], None],
        on_subscribed: Callable[[], None] | None = None,
        channels: Sequence[str] = DEFAULT_CHANNELS,
        reconnect_base_seconds: float = 1.0,
        heartbeat_seconds: float = 30.0,
        on_outcome: Callable[[str, str], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        alert: Callable[[str, str], None] | None = None,
        handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS,
        subscribe_timeout: float = SUBSCRIBE_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url
        #: The URL as logged: without its query (a ``?token=`` in it, §1.6) or user info.
        self.url_for_log = url_for_log(url)
        #: ``str()`` of a value without the token, raw or percent-encoded (aiohttp quotes URLs).
        self._redact = redactor(url, token)
        self.handshake_timeout = handshake_timeout
        self.subscribe_timeout = subscribe_timeout
        self._api_key = api_key
        self._token = token or None
        self.store = store
        self.on_stored = on_stored
        self.on_subscribed = on_subscribed
        self.channels = tuple(channels)
        self.reconnect_base_seconds = reconnect_base_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self._on_outcome = on_outcome
        self._sleep = sleep
        self._clock = clock
        self._alert = alert
        #: Why the stream is not subscribed (``/healthz``), ``None`` while it is.
        self.problem: str | None = "not connected yet"
        #: The factory refused the bridge since the last subscription (told once; see ``alert``).
        self._refused = False
        #: The current connection was refused (its close code then adds nothing).
        self._refused_now = False
        #: When the current connection was subscribed (``clock`` seconds), ``None`` before.
        self._subscribed_at: float | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        #: Successful subscriptions so far (1 after the first connection).
        self.subscriptions = 0
        #: Events stored from the stream so far (duplicates not counted).
        self.events_stored = 0
        #: Malformed frames refused so far (not JSON, nested too deep, invalid events).
        self.rejected = 0

    @property
    def connected(self) -> bool:
        """True while a subscribed connection is open."""
        return self._ws is not None and not self._ws.closed

    def advisory_health(self) -> dict[str, bool | str]:
        """``{"websocket": True}`` while subscribed, else ``{"websocket": "<reason>"}``.

        For ``/healthz`` as a part that does not fail it (the reconciliation still brings the
        tasks), e.g. ``"refused by the factory (HTTP 401)"``. Empty while not started (a
        standby does not run the WebSocket).
        """
        if self._task is None:
            return {}
        return {"websocket": True if self.problem is None else self.problem}

    async def start(self) -> None:
        """Start connecting in the background (returns at once; failures are retried)."""
        self._session = aiohttp.ClientSession()
        self._task = asyncio.create_task(self._run(), name="factory-websocket")

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        attempt = 0
        while True:
            self._subscribed_at = None
            self._refused_now = False
            try:
                await self._connect_once()
            except asyncio.CancelledError:
                raise
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status in REFUSAL_STATUSES:
                    self._refuse(f"HTTP {exc.status}")
                else:
                    self._lost(f"handshake answered HTTP {exc.status}")
                    log.warning("factory WebSocket %s: %s", self.url_for_log, self._redact(exc))
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                reason = self._redact(exc) or type(exc).__name__
                self._lost(reason)
                log.warning("factory WebSocket %s: %s", self.url_for_log, reason)
            except Exception as exc:
                self._lost(f"failed unexpectedly ({type(exc).__name__})")
                log.exception("factory WebSocket failed unexpectedly")
            finally:
                self._ws = None
            if self._stayed_up():
                attempt = 0
            delay = reconnect_delay(attempt, base_seconds=self.reconnect_base_seconds)
            attempt += 1
            log.info("factory WebSocket: reconnecting in %.2fs (attempt %d)", delay, attempt)
            await self._sleep(delay)

    def _stayed_up(self) -> bool:
        """Whether the connection that just ended was stable (see ``STABLE_CONNECTION_SECONDS``)."""
        if self._subscribed_at is None:
            return False
        return self._clock() - self._subscribed_at >= STABLE_CONNECTION_SECONDS

    def _lost(self, reason: str) -> None:
        """The connection ended or could not be opened for ``reason`` (not a refusal)."""
        if not self._refused_now:
            self.problem = f"not subscribed: {reason}"

    def _refuse(self, reason: str, detail: str = "") -> None:
        """The factory refused the bridge (see the module's docstring): say it once."""
        if self._refused_now:
            return  # an error frame and then the close that follows it: one refusal
        self._refused_now = True
        full = f"{reason}: {self._redact(detail)}" if detail else reason
        self.problem = f"refused by the factory ({full})"
        if self._refused:
            log.warning("factory WebSocket still refused (%s); retrying", full)
            return
        self._refused = True
        log.error(
            "factory WebSocket refused by the factory (%s): check FACTORY_API_KEY and "
            "FACTORY_WS_TOKEN; until it is accepted, tasks arrive only by reconciliation and "
            "pipeline and deploy events are missed; retrying every %.0f s at most",
            full,
            MAX_RECONNECT_DELAY_SECONDS,
        )
        self._tell(
            "websocket_refused",
            f"⚠️ Factory Bridge: the factory refuses the WebSocket ({reason}); tasks arrive "
            "only by reconciliation and pipeline and deploy events are missed. Check "
            "FACTORY_API_KEY and FACTORY_WS_TOKEN; the bridge keeps retrying.",
        )

    def _tell(self, what: str, text: str) -> None:
        if self._alert is not None:
            self._alert(what, text)

    def _outcome(self, outcome: str) -> None:
        if outcome == "rejected":
            self.rejected += 1
        if self._on_outcome is not None:
            self._on_outcome("websocket", outcome)

    async def _connect_once(self) -> None:
        """One connection, from handshake to close; notes when it got subscribed.

        The handshake may take :attr:`handshake_timeout` seconds, the ``subscribed`` frame then
        :attr:`subscribe_timeout` more (contract §1.6); either missing ends the connection like
        a drop, retried with backoff (§4.5).
        """
        assert self._session is not None
        handshake = asyncio.timeout(self.handshake_timeout)
        try:
            async with handshake:
                ws = await self._session.ws_connect(
                    self.url,
                    headers={"X-API-Key": self._api_key},
                    params={"token": self._token} if self._token else None,
                    heartbeat=self.heartbeat_seconds,
                    autoping=True,
                    max_msg_size=MAX_MESSAGE_BYTES,
                )
        except TimeoutError:
            if not handshake.expired():
                raise
            raise TimeoutError(f"no handshake answer within {self.handshake_timeout:g} s") from None
        async with ws:
            self._ws = ws
            self.problem = "connected, waiting for subscription confirmation"
            log.info("factory WebSocket connected; subscribing to %s", ", ".join(self.channels))
            await ws.send_json({"type": "subscribe", "channels": list(self.channels)})
            reason = await self._read(ws)
            if reason is None:
                if ws.close_code in REFUSAL_CLOSE_CODES:
                    self._refuse(f"close code {ws.close_code}")
                reason = f"closed (code {ws.close_code})"
            self._lost(reason)
            log.warning("factory WebSocket %s; events are caught up by reconciliation", reason)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str | None:
        """Handle frames until the connection ends: why it ended, ``None`` for a plain close.

        Text and UTF-8 binary frames are handled alike (§1.6 frames are JSON text); other binary
        frames and protocol errors (over :data:`MAX_MESSAGE_BYTES`: 1009, bad UTF-8: 1007; these
        end the connection) are rejected. No ``subscribed`` in :attr:`subscribe_timeout` closes it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.subscribe_timeout
        while True:
            # not receive(timeout=…): aiohttp restarts that one at every heartbeat pong
            wait = None if self._subscribed_at is not None else deadline - loop.time()
            try:
                async with asyncio.timeout(wait):
                    message = await ws.receive()
            except TimeoutError:
                await ws.close()
                return f"no subscription confirmation within {self.subscribe_timeout:g} s"
            if message.type in _CLOSED:
                return None
            try:
                text = frame_text(message)
            except FrameRejected as exc:
                self._outcome("rejected")
                if exc.closed:
                    return f"closed for a protocol error ({exc})"
                log.warning("factory WebSocket sent a frame it cannot take (%s); ignored", exc)
                continue
            if text is None:
                if message.type is aiohttp.WSMsgType.ERROR:
                    log.warning("factory WebSocket error: %s", self._redact(message.data))
                    return None
                continue
            if await self._on_text(ws, text) and self._subscribed_at is None:
                self._subscribed_at = self._clock()
            if self._refused_now:  # refused before subscribing: nothing comes on this one
                await ws.close()
                return None

    async def _on_text(self, ws: aiohttp.ClientWebSocketResponse, text: str) -> bool:
        """Handle one text frame; True when it confirmed the subscription."""
        try:
            # strict: nesting too deep for Python's decoder (RecursionError) is refused here too
            frame: Any = loads(text, check=False)
        except UnacceptableJson as exc:
            log.warning(
                "factory WebSocket sent a frame that is not acceptable JSON (%s); ignored", exc
            )
            self._outcome("rejected")
            return False
        if not isinstance(frame, dict):
            log.warning("factory WebSocket sent a frame that is not an object; ignored")
            self._outcome("rejected")
            return False
        kind = frame.get("type")
        if kind == "ping":
            await ws.send_json({"type": "pong"})
            return False
        if kind == "pong":
            return False
        if kind == "subscribed":
            self.subscriptions += 1
            self.problem = None
            log.info("factory WebSocket subscribed to %s", short(frame.get("channels")))
            if self._refused:
                self._refused = False
                log.warning("factory WebSocket accepted again after being refused")
                self._tell(
                    "websocket_recovered",
                    "✅ Factory Bridge: the factory accepts the WebSocket again; events arrive "
                    "in real time.",
                )
            if self.on_subscribed is not None:
                self.on_subscribed()
            return True
        if kind == "error":
            error = frame.get("error")
            if self._subscribed_at is None and refusal_code(error) is not None:
                assert isinstance(error, dict)  # "On connect error" (§1.6): not subscribed
                message = error.get("message")
                self._refuse(str(error["code"]), short(message) if message is not None else "")
            else:
                log.error("factory WebSocket error frame: %s", describe_error(error))
            return False
        await self._store_event(frame, text)
        return False

    async def _store_event(self, frame: dict[str, Any], text: str) -> None:
        try:
            event = parse_event(frame, check=document_needs_check(text))
        except UnknownEventType as exc:
            log.debug("ignored WebSocket event of unhandled type %r", exc.type)
            self._outcome("ignored")
            return
        except EventValidationError as exc:
            log.warning("dropped malformed WebSocket event (%s): %s", short(frame.get("type")), exc)
            self._outcome("rejected")
            return
        event_id = "ws:" + event_fingerprint(frame)
        recorded = await self.store.record_event(event_id, event.type, frame, "websocket")
        if recorded is not Recorded.DUPLICATE:
            self.events_stored += 1
        self._outcome("duplicate" if recorded is Recorded.DUPLICATE else "accepted")
        if recorded is Recorded.NEW:
            self.on_stored(event_id, event)
