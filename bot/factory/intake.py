"""HTTP intake: ``POST /events`` (signed factory webhooks) and ``GET /healthz``.

An event is verified, validated and **stored before it is acknowledged** (202): once the factory
has a 202, the event survives a crash. Answers use the contract's envelope (§1.3).

==========================  =====  ===========================================================
case                        code   body
==========================  =====  ===========================================================
stored                      202    ``{"ok": true, "data": {"eventId", "status": "accepted"}}``
duplicate event id          200    ``{"ok": true, "data": {"eventId", "status": "duplicate"}}``
unknown event type          202    ``status: "ignored"`` (logged, not stored)
bad/missing signature/time  401    ``UNAUTHORIZED`` with the reason; nothing stored
body over 1 MiB             413    ``BAD_REQUEST``; nothing stored
malformed JSON              400    ``BAD_REQUEST``
payload fails validation    400    ``VALIDATION_ERROR`` with ``field``
==========================  =====  ===========================================================
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.factory.events import EventValidationError, FactoryEvent, UnknownEventType, parse_event
from bot.factory.signing import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureError,
    verify,
)
from bot.store import Recorded, Store

__all__ = ["MAX_BODY_BYTES", "EventIntake"]

log = logging.getLogger(__name__)

#: Largest accepted event body: 1 MiB.
MAX_BODY_BYTES = 1024 * 1024


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
    on_stored:
        Called with ``(event_id, parsed event)`` once an event is stored as new, after the
        commit (the event processor's ``submit``); not for a duplicate id or for content
        accepted before.
    health:
        Returns ``{"discord": bool, "database": bool, ...}`` for ``/healthz``.
    clock:
        Unix seconds, for the ±300 s timestamp window.
    """

    def __init__(
        self,
        *,
        store: Store,
        secret: str,
        on_stored: Callable[[str, FactoryEvent], None],
        health: Callable[[], Awaitable[dict[str, bool]]],
        clock: Callable[[], float] = time.time,
        tolerance_seconds: float = 300.0,
    ) -> None:
        self.store = store
        self._secret = secret
        self._on_stored = on_stored
        self._health = health
        self._clock = clock
        self._tolerance = tolerance_seconds
        self.app = web.Application(client_max_size=MAX_BODY_BYTES * 2)
        self.app.router.add_post("/events", self.post_event)
        self.app.router.add_get("/healthz", self.healthz)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host:port`` (port 0 picks a free one; :attr:`port` tells which)."""
        self._runner = web.AppRunner(self.app, access_log=None)
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

    async def _read_body(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return None
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return None
        return body

    async def post_event(self, request: web.Request) -> web.Response:
        """Verify, validate, store, then answer (see the module table)."""
        body = await self._read_body(request)
        if body is None:
            log.warning("rejected event: body over %d bytes", MAX_BODY_BYTES)
            return _error(413, "BAD_REQUEST", f"event body is larger than {MAX_BODY_BYTES} bytes")
        try:
            verify(
                self._secret,
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
        if not event_id or len(event_id) > 200:
            return _error(
                400, "VALIDATION_ERROR", "missing or overlong event id header", EVENT_ID_HEADER
            )
        try:
            raw = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("rejected event %s: malformed JSON (%s)", event_id, exc)
            return _error(400, "BAD_REQUEST", f"body is not valid JSON: {exc}")
        try:
            event = parse_event(raw)
        except UnknownEventType as exc:
            log.info("ignored event %s of unhandled type %r", event_id, exc.type)
            return _ok(202, {"eventId": event_id, "status": "ignored"})
        except EventValidationError as exc:
            log.warning("rejected event %s: %s", event_id, exc)
            return _error(400, "VALIDATION_ERROR", exc.message, exc.field)
        recorded = await self.store.record_event(event_id, event.type, raw, "webhook")
        if recorded is Recorded.DUPLICATE:
            return _ok(200, {"eventId": event_id, "status": "duplicate"})
        if recorded is Recorded.NEW:
            self._on_stored(event_id, event)
        return _ok(202, {"eventId": event_id, "status": "accepted"})

    async def healthz(self, request: web.Request) -> web.Response:
        """200 when the Discord session is ready and the database answers, else 503."""
        parts = await self._health()
        healthy = all(parts.values())
        body = {
            "status": "ok" if healthy else "degraded",
            "checks": {name: ("up" if up else "down") for name, up in parts.items()},
        }
        return _json(200 if healthy else 503, body)
