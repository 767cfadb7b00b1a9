"""HTTP intake: ``POST /events`` (signed factory webhooks) and ``GET /healthz``.

An event is verified, validated and **stored before it is acknowledged** (202): once the factory
has a 202, the event survives a crash. Answers use the contract's envelope (§1.3).

The body is read whole before anything else, however the network delivers it: in many TCP
segments, with ``Content-Length`` or ``Transfer-Encoding: chunked`` (RFC 9112 §6). The signature
is checked over exactly those bytes. Any input the bridge cannot take is answered 4xx with the
reason, never 5xx (decoding: :mod:`bot.factory.strict_json`).

==============================  =====  =======================================================
case                            code   body
==============================  =====  =======================================================
stored                          202    ``{"ok": true, "data": {"eventId", "status": "accepted"}}``
duplicate event id              200    ``{"ok": true, "data": {"eventId", "status": "duplicate"}}``
unknown event type              202    ``status: "ignored"`` (logged, not stored)
bad/missing signature/time      401    ``UNAUTHORIZED`` with the reason; nothing stored
body over 1 MiB (any framing)   413    ``BAD_REQUEST``; nothing stored
body shorter than its           400    ``BAD_REQUEST`` once ``BRIDGE_HTTP_BODY_TIMEOUT_SECONDS``
``Content-Length``                     passed without the rest (or the framing is broken)
chunked body not complete in    408    ``BAD_REQUEST``
time
event id header missing,        400    ``VALIDATION_ERROR``, ``field`` ``X-Factory-Event-Id``
over 200 chars or not
printable ASCII
not UTF-8 / not JSON, ``NaN``,  400    ``BAD_REQUEST`` with the reason (``field`` when known)
``Infinity``, 31+ digit
integers, nesting over 64
levels, lone surrogates
payload fails validation        400    ``VALIDATION_ERROR`` with ``field`` (e.g. a task id
                                       outside ``[A-Za-z0-9_-]``: ``data.task.id``)
the store cannot write it       503    ``SERVICE_UNAVAILABLE`` with ``Retry-After`` (contract
(database down, disk full)             §1.3: a dependency down; the factory retries); counted
                                       ``outcome="unavailable"``
==============================  =====  =======================================================

``GET /healthz`` answers 200 when every check is up (503 otherwise); with ``describe`` (the
app) also ``{"ok", "data": {"role": "leader" | "standby", "status", "checks", …}}`` beside the
top-level ``status`` and ``checks`` and, when the app gives them, counters such as ``events_failed`` (events parked as failed since start, see
:mod:`bot.factory.processor`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.factory.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify_rotating,
)
from bot.factory.strict_json import UnacceptableJson, document_needs_check, loads
from bot.store import Recorded, Store

__all__ = ["BODY_TIMEOUT_SECONDS", "MAX_BODY_BYTES", "STORE_RETRY_AFTER_SECONDS", "EventIntake"]

log = logging.getLogger(__name__)

#: The request's outcome for ``factory_bridge_events_total`` when its status does not say it
#: (a 202 that ignored an unhandled type: ``ignored``, as the WebSocket and Redis intakes count).
_OUTCOME = "factory_bridge.outcome"

#: Largest accepted event body: 1 MiB.
MAX_BODY_BYTES = 1024 * 1024
#: Default seconds a client has to deliver the whole body (``BRIDGE_HTTP_BODY_TIMEOUT_SECONDS``).
BODY_TIMEOUT_SECONDS = 30.0
#: ``Retry-After`` seconds of the 503 answered when the store cannot write an event.
STORE_RETRY_AFTER_SECONDS = 5
#: An event id: 1–200 printable ASCII characters (it is stored and echoed back).
_EVENT_ID = re.compile(r"[\x21-\x7e]{1,200}")


class _BodyRefused(Exception):
    """The body could not be read whole: the answer to give instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(status: int, body: dict[str, Any]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message, "requestId": str(uuid.uuid4())}
    if field is not None:
        error["field"] = field
    return _json(status, {"ok": False, "error": error})


def _ok(status: int, data: dict[str, Any]) -> web.Response:
    return _json(status, {"ok": True, "data": data})


class EventIntake:
    """The bridge's HTTP server.

    Parameters
    ----------
    store:
        Where events are stored before the 202.
    secret:
        ``FACTORY_WEBHOOK_SECRET`` (HMAC-SHA256 key).
    previous_secret:
        ``FACTORY_WEBHOOK_SECRET_PREVIOUS``: while set, a signature by this secret is accepted
        too (a rotation is under way) and each accepted delivery's log line says which secret
        signed it; ``None`` refuses it.
    on_stored:
        Called with ``(event_id, parsed event)`` once an event is stored as new, after the
        commit (the event processor's ``submit``); not for a duplicate id or for content
        accepted before.
    health:
        Returns ``{"discord": bool, "database": bool, ...}`` for ``/healthz``; a part that
        is down may give its reason as text instead of ``False`` (shown as ``down: <why>``).
    clock:
        Unix seconds, for the ±300 s timestamp window.
    tolerance_seconds:
        Largest distance between the signed timestamp and ``clock`` (seconds).
    body_timeout_seconds:
        Seconds a client has to deliver the whole body once its headers arrived; a body still
        short of its ``Content-Length`` then is a 400, a chunked one a 408.
    counters:
        Returns extra numbers for ``/healthz`` (e.g. ``{"events_failed": 2}``); optional.
    on_outcome:
        Called with ``("webhook", outcome)`` for every ``POST /events`` answered: ``accepted``
        (202), ``duplicate`` (200) or ``rejected`` (4xx/5xx) — metrics; optional.
    metrics:
        Renders ``GET /metrics``: ``(body, content type)`` in the Prometheus text format
        (``bot.metrics.BridgeMetrics.render``); without it ``/metrics`` is 404.
    advisory:
        Returns parts shown in ``/healthz`` ``checks`` like those of ``health`` that do not
        make it fail (e.g. ``{"redis": "down: …"}``: the bridge still takes webhooks); one that
        is down makes the status ``degraded`` with 200; optional.
    describe:
        Returns what ``/healthz`` shows under ``data`` besides the checks, e.g.
        ``{"role": "leader" | "standby"}`` (README, "Production"); optional.
    """

    def __init__(
        self,
        *,
        store: Store,
        secret: str,
        previous_secret: str | None = None,
        on_stored: Callable[[str, FactoryEvent], None],
        health: Callable[[], Awaitable[Mapping[str, bool | str]]],
        clock: Callable[[], float] = time.time,
        tolerance_seconds: float = 300.0,
        body_timeout_seconds: float = BODY_TIMEOUT_SECONDS,
        counters: Callable[[], dict[str, int]] | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
        metrics: Callable[[], Awaitable[tuple[bytes, str]]] | None = None,
        advisory: Callable[[], Mapping[str, bool | str]] | None = None,
        describe: Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self._secret = secret
        self._previous_secret = previous_secret or None
        self._on_stored = on_stored
        self._health = health
        self._clock = clock
        self._tolerance = tolerance_seconds
        self._body_timeout = body_timeout_seconds
        self._counters = counters
        self._on_outcome = on_outcome
        self._metrics = metrics
        self._advisory = advisory
        self._describe = describe
        self.app = web.Application(client_max_size=MAX_BODY_BYTES * 2)
        self.app.router.add_post("/events", self._post_event_counted)
        self.app.router.add_get("/healthz", self.healthz)
        if metrics is not None:
            self.app.router.add_get("/metrics", self.metrics)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; :attr:`port` tells which)."""
        # an idle kept-alive connection is closed after 75 s (aiohttp's default is an hour:
        # idle or trickling clients would hold a socket and its memory that long)
        self._runner = web.AppRunner(self.app, access_log=None, keepalive_timeout=75.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("event intake listening on %s:%s", host, self.port)

    async def stop(self) -> None:
        """Stop accepting requests (in-flight requests finish)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _read_body(self, request: web.Request) -> bytes:
        """The whole body, however it is framed and segmented.

        Reads until the end of the body (``Content-Length`` reached, or the last chunk of a
        chunked body), not only what is buffered: over a real network a body arrives in many
        TCP segments.

        Raises
        ------
        _BodyRefused
            413 over :data:`MAX_BODY_BYTES` (announced or counted), 400 for a body shorter than
            its ``Content-Length`` or with broken framing, 408 when a chunked body does not end
            within the body timeout.
        """
        announced = request.content_length
        if announced is not None and announced > MAX_BODY_BYTES:
            raise _BodyRefused(413, f"event body is larger than {MAX_BODY_BYTES} bytes")
        # a body framed by its length ends there: one that stops short is a 400 (broken
        # framing, not retried), whatever its encoding; only a chunked one is "not ended" (408)
        framed_by_length = announced is not None
        if request.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            # Content-Length counts the encoded bytes (RFC 9110 §8.6); aiohttp decodes the body
            # and checks that length itself, so the decoded size is not compared with it
            announced = None
        content = request.content
        if content.is_eof() and content.exception() is None:
            # the whole body is buffered already (a webhook usually arrives with its headers):
            # take it without arming the body timeout (a timer per request on the event loop)
            body = content.read_nowait()
            return self._whole(body, announced)
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self._body_timeout):
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise _BodyRefused(413, f"event body is larger than {MAX_BODY_BYTES} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            if announced is not None:
                raise _BodyRefused(
                    400,
                    f"body shorter than its Content-Length: {size} of {announced} bytes "
                    f"arrived in {self._body_timeout:g}s",
                ) from None
            if framed_by_length:  # encoded: what arrived is counted decoded
                raise _BodyRefused(
                    400,
                    f"body shorter than its Content-Length ({request.content_length} encoded "
                    f"bytes): it did not end within {self._body_timeout:g}s",
                ) from None
            raise _BodyRefused(
                408, f"body did not end within {self._body_timeout:g}s ({size} bytes arrived)"
            ) from None
        except HttpProcessingError as exc:  # broken chunked framing, short body at EOF
            raise _BodyRefused(400, f"body framing is broken: {exc.message}") from None
        except web.RequestPayloadError as exc:  # aiohttp's server wraps payload errors in it
            # a Content-Encoding it cannot decode (a corrupt gzip or deflate body) or broken
            # framing: a 400 with the reason; a 500 would make the factory send it for ever
            raise _BodyRefused(400, f"body could not be read: {exc}") from None
        except ConnectionError as exc:  # the client went away mid-body
            raise _BodyRefused(400, f"body incomplete: {exc}") from None
        return self._whole(b"".join(chunks), announced)

    @staticmethod
    def _whole(body: bytes, announced: int | None) -> bytes:
        """``body`` once it ended: refused when over the limit or short of its length."""
        size = len(body)
        if size > MAX_BODY_BYTES:
            raise _BodyRefused(413, f"event body is larger than {MAX_BODY_BYTES} bytes")
        if announced is not None and size != announced:
            raise _BodyRefused(
                400, f"body shorter than its Content-Length: {size} of {announced} bytes"
            )
        return body

    async def _post_event_counted(self, request: web.Request) -> web.Response:
        response = await self.post_event(request)
        if self._on_outcome is not None:
            status = response.status
            outcome = request.get(_OUTCOME) or (
                "accepted"
                if status == 202
                else "duplicate"
                if status == 200
                else "unavailable"
                if status == 503
                else "rejected"
            )
            self._on_outcome("webhook", outcome)
        return response

    async def metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: every metric in the Prometheus text exposition format."""
        assert self._metrics is not None
        body, content_type = await self._metrics()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def post_event(self, request: web.Request) -> web.Response:
        """Verify, validate, store, then answer (see the module table)."""
        try:
            body = await self._read_body(request)
        except _BodyRefused as refused:
            log.warning("rejected event from %s: %s", request.remote, refused.message)
            return _error(refused.status, "BAD_REQUEST", refused.message)
        try:
            used = verify_rotating(
                self._secret,
                self._previous_secret,
                timestamp=request.headers.get(TIMESTAMP_HEADER),
                signature=request.headers.get(SIGNATURE_HEADER),
                body=body,
                now=self._clock(),
                tolerance_seconds=self._tolerance,
            )
        except SignatureError as exc:
            log.warning("rejected event from %s: %s", request.remote, exc.reason)
            return _error(401, "UNAUTHORIZED", f"webhook signature rejected: {exc.reason}")
        event_id = (request.headers.get(EVENT_ID_HEADER) or "").strip()
        if self._previous_secret is not None:
            log.info(
                "event %s signed with the %s webhook secret (rotation under way)",
                event_id[:200],
                used.value,
            )
        if not _EVENT_ID.fullmatch(event_id):
            return _error(
                400,
                "VALIDATION_ERROR",
                "missing event id header, or not 1-200 printable ASCII characters",
                EVENT_ID_HEADER,
            )
        try:
            raw = loads(body, check=False)  # parse_event checks the document next
        except UnacceptableJson as exc:
            log.warning("rejected event %s: %s", event_id, exc)
            return _error(400, "BAD_REQUEST", exc.message, exc.field)
        try:
            event = parse_event(raw, check=document_needs_check(body))
        except UnknownEventType as exc:
            log.info("ignored event %s of unhandled type %r", event_id, exc.type)
            request[_OUTCOME] = "ignored"
            return _ok(202, {"eventId": event_id, "status": "ignored"})
        except EventValidationError as exc:
            log.warning("rejected event %s: %s", event_id, exc)
            return _error(400, "VALIDATION_ERROR", exc.message, exc.field)
        try:
            recorded = await self.store.record_event(event_id, event.type, raw, "webhook")
        except Exception as exc:  # nothing stored: the factory must send it again
            log.error("event %s could not be stored, answered 503: %r", event_id, exc)
            response = _error(
                503, "SERVICE_UNAVAILABLE", "the event could not be stored; send it again"
            )
            response.headers["Retry-After"] = str(STORE_RETRY_AFTER_SECONDS)
            return response
        if recorded is Recorded.DUPLICATE:
            return _ok(200, {"eventId": event_id, "status": "duplicate"})
        if recorded is Recorded.NEW:
            self._on_stored(event_id, event)
        return _ok(202, {"eventId": event_id, "status": "accepted"})

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when the Discord session is ready and the database answers, else 503.

        An advisory part that is down (Redis) makes the status ``degraded`` but keeps 200.
        """
        parts = dict(await self._health())
        healthy = all(up is True for up in parts.values())
        advisory = dict(self._advisory()) if self._advisory is not None else {}
        parts.update(advisory)
        body: dict[str, Any] = {
            "status": "ok" if all(up is True for up in parts.values()) else "degraded",
            # a part is up (True), down (False) or down for a reason (its text)
            "checks": {
                name: "up" if up is True else f"down: {up}" if up else "down"
                for name, up in parts.items()
            },
        }
        if self._counters is not None:
            body.update(self._counters())
        if self._describe is not None:
            # the contract's envelope (§1.3) around the same facts: {"ok", "data": {"role", …}}
            body = {**body, "ok": healthy, "data": {**self._describe(), **body}}
        return _json(200 if healthy else 503, body)
