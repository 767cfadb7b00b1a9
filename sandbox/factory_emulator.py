"""A local emulator of the factory API (REST + WebSocket + signed webhooks).

It follows the canonical interface contract (``001_…`` reference document) closely enough that the
bridge's real httpx client and event intake can be tested against it over real sockets:

- §1.3 envelope ``{"ok": true, "data", "meta": {"requestId", "timestamp", "pagination"?}}`` and
  ``{"ok": false, "error": {"code", "message", "field"?, "details"?, "requestId"}}``; every
  response carries ``X-Request-Id`` (echoing the request's, if given) and ``X-API-Version: 1``
  (§1.1).
- §1.4 entities (Pipeline, Task with TaskContext/TestResults/DiffSummary, Agent, AuditEntry) in
  camelCase JSON.
- §1.5 endpoints, all under ``/v1`` and all requiring ``X-API-Key`` (§1.2; else 401
  ``UNAUTHORIZED``): ``GET /tasks``, ``GET /tasks/stats``, ``GET /tasks/{id}``,
  ``POST /tasks/{id}/claim``, ``POST /tasks/{id}/complete``, ``POST /tasks/{id}/reassign``,
  ``POST /tasks/bulk``, ``GET /approvals``, ``POST /approvals/{id}/escalate``,
  ``GET /pipelines``, ``GET /pipelines/{id}``, ``GET /agents``,
  ``GET /dashboard/summary``, ``GET/POST /webhooks``, ``DELETE /webhooks/{id}`` (204),
  ``GET /webhooks/events``. Unknown routes answer 404 ``NOT_FOUND``; a body that is not valid
  JSON, or not a JSON object, answers 400 ``BAD_REQUEST``.
- §1.6 WebSocket at ``/v1/ws`` (``subscribe``/``subscribed``, ``unsubscribe``, ``ping``/``pong``,
  ``WsEvent`` frames ``{type, timestamp, channel, data}``), plus a server ``{"type": "ping"}``
  every ``ws_ping_interval_seconds``.
- §7.1 ``Idempotency-Key`` on every ``POST``: the first response (status and exact body) is stored
  for 24 h (by the emulator's clock) and returned again, without re-executing, for any later
  request with the same key — whatever its path or body. Responses that are not stored: injected
  faults (:meth:`FactoryEmulator.fail`), 401, 400 (malformed or invalid requests, as Stripe does),
  so a corrected retry with the same key executes. A replay carries ``Idempotent-Replayed: true``.

Choices where the contract is silent (documented so tests can rely on them):

- ``POST /tasks/{id}/claim`` on a claimed task re-claims it; on a completed one it is 409.
- ``POST /tasks/{id}/complete`` always moves the task to status ``"completed"``, whatever the
  decision (``approved``/``rejected``/``deferred``/``escalated``). ``decidedBy`` is
  ``decisionData.factoryUserId`` or ``decisionData.discordUsername`` or ``"api-key"``.
- ``POST /tasks/{id}/reassign`` emits no event (the contract defines no payload for it); a
  completed task cannot be reassigned (409).
- ``POST /tasks/bulk`` also accepts an optional ``decisionData`` object (same ``decidedBy`` rule).
- ``POST /approvals/{id}/escalate`` (``EscalateBody``: ``reason`` required, ``escalateTo``
  optional) raises the approval's task one tier (``escalationLevel`` + 1, at most 4), reassigns
  it to ``escalateTo`` when given, emits no event (like reassign) and answers the ``Approval``
  with the task's new ``escalationLevel``; 404 for an unknown approval, 409 when the approval
  is no longer pending or its task is completed. Each executed call is in ``escalations``.
- Event channels: ``task.created`` on ``tasks:pending``, every other task event on ``tasks:*``.
  A subscription ``"tasks:*"`` receives events of any ``tasks:…`` channel, ``"pipeline:*"`` any
  ``pipeline:<id>``, ``"*"`` everything; other subscriptions need the exact channel.
- Events are delivered by one background worker, in order. Events caused by API requests are
  queued without waiting (like a real server); :meth:`FactoryEmulator.emit`,
  :meth:`~FactoryEmulator.create_task` and :meth:`~FactoryEmulator.decide_task` wait for their
  own delivery; :meth:`~FactoryEmulator.drain_events` waits for everything queued.

Webhook deliveries use the bridge's signed format (:mod:`bot.factory.signing`): the WsEvent JSON
is POSTed to ``webhook_url`` with ``X-Factory-Event-Id``, ``X-Factory-Timestamp`` and, when a
``webhook_secret`` is set, ``X-Factory-Signature``. There are no automatic redeliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hmac
import json
import logging
import math
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import jwt
from aiohttp import WSCloseCode, WSMsgType, web

from bot.factory.signing import EVENT_ID_HEADER, TIMESTAMP_HEADER, signed_headers

__all__ = [
    "DECISIONS",
    "PRIORITIES",
    "SLA_SECONDS",
    "SLA_WARNING_FRACTION",
    "DeliveryResult",
    "FactoryEmulator",
    "RecordedRequest",
    "to_iso",
]

_log = logging.getLogger(__name__)

PRIORITIES = ("critical", "high", "medium", "low")
"""Contract §1.4 ``Priority`` values, most urgent first."""

TASK_TYPES = ("approval", "review", "decision", "manual_action", "fix_required")
TASK_STATUSES = ("pending", "claimed", "in_progress", "completed", "expired", "escalated")
PIPELINE_STATUSES = ("active", "paused", "completed", "failed", "archived")
AGENT_STATUSES = ("idle", "active", "error", "offline")

DECISIONS = ("approved", "rejected", "deferred", "escalated")
"""Contract §1.4 ``TaskDecision`` values accepted by ``POST /tasks/{id}/complete``."""

BULK_ACTIONS = {"approve": "approved", "reject": "rejected", "defer": "deferred"}

SLA_SECONDS: dict[str, int] = {"critical": 3600, "high": 14400, "medium": 86400, "low": 259200}
"""Default SLA per priority in seconds (contract §5.3 ``sla.*_seconds``)."""

SLA_WARNING_FRACTION = 0.25
"""An open task is in SLA warning when less than this fraction of its SLA is left (§5.3)."""

IDEMPOTENCY_TTL = timedelta(hours=24)
"""How long a stored idempotent response is replayed (contract §7.1)."""

_ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    408: "TIMEOUT",
    409: "CONFLICT",
    410: "GONE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
    502: "SERVICE_UNAVAILABLE",
    503: "SERVICE_UNAVAILABLE",
    504: "TIMEOUT",
}

_TASK_FIELDS = (
    "id pipelineId stageName type title description context status priority assigneeId "
    "claimedAt claimedBy decision decisionNotes decisionData decidedAt decidedBy slaDeadline "
    "slaWarningsSent slaBreached escalationLevel blocksStageAdvance blocksPipelineId "
    "createdAt updatedAt"
).split()
_PIPELINE_FIELDS = (
    "id name slug template platform currentStage status priority createdBy assigneeId config "
    "metadata slaDeadline startedAt completedAt createdAt updatedAt"
).split()
_AGENT_FIELDS = (
    "id name type status currentTaskId currentPipelineId health capabilities config "
    "tasksCompletedTotal avgTaskDurationSeconds createdAt updatedAt"
).split()

_JSON_TYPE = "application/json"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def to_iso(moment: datetime) -> str:
    """Format an aware datetime as contract ISO 8601 UTC with milliseconds and ``Z``.

    Example: ``2025-07-14T09:30:00.000Z`` (what JavaScript's ``toISOString`` produces).
    Naive datetimes are taken to be UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return to_iso(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(payload: object) -> bytes:
    return json.dumps(payload, default=_json_default, separators=(",", ":")).encode()


def _path_matches(pattern: re.Pattern[str], path: str) -> bool:
    """Match a whole path, with or without its ``/v1`` prefix."""
    if pattern.fullmatch(path):
        return True
    return path.startswith("/v1/") and pattern.fullmatch(path[3:]) is not None


def _method_matches(wanted: str, method: str) -> bool:
    return wanted == "*" or wanted.upper() == method.upper()


def _channel_matches(subscription: str, channel: str) -> bool:
    if subscription in ("*", channel):
        return True
    return subscription.endswith(":*") and channel.startswith(subscription[:-1])


@dataclass(slots=True)
class RecordedRequest:
    """One request the emulator received, appended on arrival.

    Attributes
    ----------
    method : str
        HTTP method, upper case.
    path : str
        URL path including ``/v1``.
    query : dict[str, str]
        Query parameters (last value wins).
    headers : dict[str, str]
        Request headers as sent; use :meth:`header` for a case-insensitive lookup.
    json : Any
        Parsed JSON body, or ``None`` if empty or malformed.
    body : bytes
        Raw body.
    status : int
        Status answered; 0 while the request is still being handled (e.g. delayed); 101 for an
        accepted WebSocket, 401 for one refused with an error frame.
    at : datetime
        Arrival time by the emulator's clock.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    body: bytes
    status: int
    at: datetime

    def header(self, name: str) -> str | None:
        """Return the value of header ``name`` (case-insensitive), or ``None``."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """Outcome of delivering one event to one target.

    Attributes
    ----------
    event_id : str
        The event's id (``X-Factory-Event-Id`` on webhooks).
    event_type : str
        The WsEvent ``type``, e.g. ``"task.created"``.
    target : {"webhook", "websocket"}
        Where it went.
    status : int or None
        HTTP status answered by the webhook receiver; ``None`` for WebSocket frames and for
        webhook requests that got no answer.
    error : str or None
        Why the delivery failed at transport level (connection refused, timeout, closed socket).
    """

    event_id: str
    event_type: str
    target: Literal["webhook", "websocket"]
    status: int | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """``True`` if delivered without transport error and, for webhooks, answered 2xx."""
        if self.error is not None:
            return False
        return self.status is None or 200 <= self.status < 300


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        details: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.details = details
        self.headers = dict(headers or {})


def _validation_error(field_name: str, message: str, received: object, expected: str) -> _ApiError:
    return _ApiError(
        400,
        "VALIDATION_ERROR",
        message,
        field=field_name,
        details={
            "validationErrors": [
                {
                    "field": field_name,
                    "message": message,
                    "received": received,
                    "expected": expected,
                }
            ]
        },
    )


@dataclass(slots=True)
class _Rule:
    method: str
    pattern: re.Pattern[str]
    remaining: int | None
    status: int = 0
    retry_after: float | None = None
    seconds: float = 0.0
    body: bytes = b""
    content_type: str = "text/html"
    after: bool = False  # garble: act on the request first, then mangle the answer
    drop: bool = False  # delay: never act on the request (a black hole)

    def take(self, method: str, path: str) -> bool:
        if self.remaining == 0 or not _method_matches(self.method, method):
            return False
        if not _path_matches(self.pattern, path):
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True


@dataclass(slots=True)
class _Stored:
    status: int
    body: bytes
    at: datetime


@dataclass(eq=False, slots=True)
class _WsConn:
    ws: web.WebSocketResponse
    request: web.Request
    channels: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Call:
    params: dict[str, str]
    query: Mapping[str, str]
    body: dict[str, Any]
    status: int = 200  # a handler sets 201 (created) or 204 (no content)


_Handler = Callable[[_Call], Awaitable[tuple[Any, dict[str, Any] | None]]]
_Queued = tuple[dict[str, Any], str, asyncio.Future[list[DeliveryResult]] | None]


class FactoryEmulator:
    """Factory API emulator served by aiohttp on a local port.

    Parameters
    ----------
    api_key
        The only accepted ``X-API-Key`` (and, without ``ws_jwt_secret``, WebSocket ``?token=``).
    ws_jwt_secret
        When set, the WebSocket's ``?token=`` must be a JWT (contract §1.2 ``JWTPayload``)
        signed HS256 with this secret, not expired (``exp``), with a ``sub`` and the
        ``tasks:read`` scope; ``X-API-Key`` is still accepted.
    webhook_url
        Where events are POSTed as signed webhooks; ``None`` disables webhooks.
    webhook_secret
        HMAC secret for ``X-Factory-Signature``; ``None`` sends unsigned deliveries.
    clock
        Returns the current aware UTC ``datetime``; used for every timestamp, SLA computation,
        webhook signing time and idempotency expiry.
    ws_ping_interval_seconds
        Seconds between server ``{"type": "ping"}`` frames on each WebSocket; ``None`` disables.
    webhook_timeout_seconds
        Timeout of one webhook POST, in seconds.

    Attributes
    ----------
    tasks : dict[str, dict]
        Live Task objects by id (contract §1.4); tests may edit them directly.
    pipelines : dict[str, dict]
        Live Pipeline objects by id.
    agents : list[dict]
        Agent objects (see :meth:`set_agents`).
    audit : list[dict]
        AuditEntry objects for every mutation, oldest first.
    requests : list[RecordedRequest]
        Every HTTP request (and WebSocket handshake), in arrival order.
    deliveries : list[DeliveryResult]
        Every event delivery attempt, in delivery order.
    ws_messages : list[dict]
        Every JSON message received from WebSocket clients.
    ws_connect_count : int
        Authenticated WebSocket connections accepted so far.
    webhooks : dict[str, dict]
        Webhooks registered through ``POST /v1/webhooks`` by id (``{id, url, events, secret,
        active, createdAt}``); every event of a subscribed type is also POSTed, signed with
        that webhook's secret, to its URL (once per URL: ``webhook_url`` is skipped when it is
        registered too).
    escalations : list[dict]
        Every executed ``POST /v1/approvals/{id}/escalate`` (not replays of an
        ``Idempotency-Key``): ``{approvalId, taskId, reason, escalateTo, escalationLevel}``,
        the level after the call.
    ws_auth : list[str]
        How each accepted WebSocket authenticated: ``"jwt"``, ``"token"`` (the API key as
        ``?token=``) or ``"api-key"`` (the header); the JWT wins when both are given.
    ws_pongs_received : int
        ``{"type": "pong"}`` frames received from clients.
    """

    def __init__(
        self,
        *,
        api_key: str = "factory-test-key",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
        ws_ping_interval_seconds: float | None = 30.0,
        webhook_timeout_seconds: float = 5.0,
        ws_jwt_secret: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.ws_jwt_secret = ws_jwt_secret
        self.ws_auth: list[str] = []
        #: registered webhooks (contract §1.5 ``POST /v1/webhooks``) by id, secrets included
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.ws_ping_interval_seconds = ws_ping_interval_seconds
        self.webhook_timeout_seconds = webhook_timeout_seconds
        self._clock = clock
        self.tasks: dict[str, dict[str, Any]] = {}
        #: The last task listing: (query without page and limit, the tasks in order).
        self._task_listing: tuple[tuple[tuple[str, str], ...], list[dict[str, Any]]] | None = None
        self.approvals: dict[str, dict[str, Any]] = {}
        self.escalations: list[dict[str, Any]] = []
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.agents: list[dict[str, Any]] = []
        self.audit: list[dict[str, Any]] = []
        self.requests: list[RecordedRequest] = []
        self.deliveries: list[DeliveryResult] = []
        self.ws_messages: list[dict[str, Any]] = []
        self.ws_connect_count = 0
        self.ws_pongs_received = 0
        self._faults: list[_Rule] = []
        self._delays: list[_Rule] = []
        self._garbles: list[_Rule] = []
        self._idempotent: dict[str, _Stored] = {}
        self._idempotency_locks: dict[str, asyncio.Lock] = {}
        self._ws_conns: set[_WsConn] = set()
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self._http: httpx.AsyncClient | None = None
        self._queue: asyncio.Queue[_Queued] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._routes: list[tuple[str, re.Pattern[str], _Handler]] = [
            ("GET", re.compile(r"/v1/tasks"), self._list_tasks),
            ("GET", re.compile(r"/v1/tasks/stats"), self._get_task_stats),
            ("POST", re.compile(r"/v1/tasks/bulk"), self._bulk),
            ("GET", re.compile(r"/v1/tasks/(?P<id>[^/]+)"), self._get_task),
            ("POST", re.compile(r"/v1/tasks/(?P<id>[^/]+)/claim"), self._claim),
            ("POST", re.compile(r"/v1/tasks/(?P<id>[^/]+)/complete"), self._complete),
            ("POST", re.compile(r"/v1/tasks/(?P<id>[^/]+)/reassign"), self._reassign),
            ("GET", re.compile(r"/v1/approvals"), self._list_approvals),
            ("POST", re.compile(r"/v1/approvals/(?P<id>[^/]+)/escalate"), self._escalate),
            ("GET", re.compile(r"/v1/pipelines"), self._list_pipelines),
            ("GET", re.compile(r"/v1/pipelines/(?P<id>[^/]+)"), self._get_pipeline),
            ("GET", re.compile(r"/v1/agents"), self._list_agents),
            ("GET", re.compile(r"/v1/dashboard/summary"), self._get_dashboard),
            ("GET", re.compile(r"/v1/webhooks"), self._list_webhooks),
            ("GET", re.compile(r"/v1/webhooks/events"), self._webhook_events),
            ("POST", re.compile(r"/v1/webhooks"), self._create_webhook),
            ("DELETE", re.compile(r"/v1/webhooks/(?P<id>[^/]+)"), self._delete_webhook),
        ]

    # ================================================================== lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on ``host``:``port`` (``port=0`` picks a free port) and the event worker.

        Raises
        ------
        RuntimeError
            If the emulator is already running.
        """
        if self._runner is not None:
            raise RuntimeError("FactoryEmulator is already running")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])
        self._http = httpx.AsyncClient(timeout=self.webhook_timeout_seconds)
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._delivery_worker(self._queue))

    async def stop(self) -> None:
        """Stop everything; safe to call twice.

        Closes the WebSockets, stops the event worker (events still queued are dropped and their
        waiters cancelled), closes the webhook client and the server.
        """
        await self.drop_websockets()
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._queue is not None:
            while not self._queue.empty():
                _, _, future = self._queue.get_nowait()
                if future is not None:
                    future.cancel()
            self._queue = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1`` — the value for ``FACTORY_API_URL``.

        Raises
        ------
        RuntimeError
            If the emulator has not been started.
        """
        return f"http://{self._authority()}/v1"

    @property
    def ws_url(self) -> str:
        """``ws://HOST:PORT/v1/ws``.

        Raises
        ------
        RuntimeError
            If the emulator has not been started.
        """
        return f"ws://{self._authority()}/v1/ws"

    @property
    def ws_connections(self) -> int:
        """Number of WebSocket connections currently open."""
        return len(self._ws_conns)

    def _authority(self) -> str:
        if self._port is None:
            raise RuntimeError("FactoryEmulator is not started")
        return f"{self._host}:{self._port}"

    # ================================================================== test controls

    def calls(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests whose method and whole path match.

        Parameters
        ----------
        method
            HTTP method (case-insensitive) or ``"*"`` for any.
        path_regex
            Regular expression matched against the whole path, with or without the ``/v1``
            prefix, e.g. ``r"/tasks/[^/]+/complete"``.
        """
        pattern = re.compile(path_regex)
        return [
            r
            for r in self.requests
            if _method_matches(method, r.method) and _path_matches(pattern, r.path)
        ]

    def fail(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 503,
        times: int = 1,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with an error envelope, before auth.

        The error code follows the status (contract §1.3): 503/502 ``SERVICE_UNAVAILABLE``, 500
        ``INTERNAL_ERROR``, 429 ``RATE_LIMITED``, 504/408 ``TIMEOUT``, 4xx their own codes.
        These responses are never stored under an ``Idempotency-Key``. Applies to the WebSocket
        handshake too (``fail("GET", "/v1/ws")``).

        Parameters
        ----------
        method
            HTTP method or ``"*"``.
        path_regex
            Whole-path regular expression, with or without ``/v1``.
        status
            HTTP status to answer.
        times
            How many requests fail (at least 1).
        retry_after
            Seconds for a ``Retry-After`` header (fractions allowed, for fast tests) and
            ``details.retryAfterSeconds``.

        Raises
        ------
        ValueError
            If ``times`` < 1 or ``status`` is not a 4xx/5xx status.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        if not 400 <= status <= 599:
            raise ValueError("status must be a 4xx or 5xx HTTP status")
        rule = _Rule(method, re.compile(path_regex), times, status=status, retry_after=retry_after)
        self._faults.append(rule)

    def delay(
        self,
        method: str,
        path_regex: str,
        seconds: float,
        *,
        times: int | None = None,
        drop: bool = False,
    ) -> None:
        """Hold matching requests for ``seconds`` before handling them.

        A client that gave up meanwhile does not stop the handling: the request is still
        acted on after the delay (a decision whose answer came too late is recorded).

        Parameters
        ----------
        method
            HTTP method or ``"*"``.
        path_regex
            Whole-path regular expression, with or without ``/v1``.
        seconds
            Real (event-loop) seconds to wait.
        times
            How many requests are delayed; ``None`` for all until :meth:`clear_faults`.
        drop
            Never act on the held requests: after the delay they are answered 504 without
            being handled (a request lost on its way; the client only sees a timeout).
        """
        self._delays.append(
            _Rule(method, re.compile(path_regex), times, seconds=seconds, drop=drop)
        )

    def garble(
        self,
        method: str,
        path_regex: str,
        body: bytes | str = b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        *,
        status: int = 200,
        content_type: str = "text/html",
        times: int = 1,
        after: bool = False,
    ) -> None:
        """Answer the next ``times`` matching requests with ``body`` instead of the contract's JSON.

        For answers the bridge cannot understand: an HTML page from a proxy, invalid JSON
        (``'{"ok": tru'``), JSON of the wrong shape (``'{"ok": true, "data": 5}'``). Garbled
        answers are never stored under an ``Idempotency-Key``.

        Parameters
        ----------
        method
            HTTP method or ``"*"``.
        path_regex
            Whole-path regular expression, with or without ``/v1``.
        body
            The answer's body (text is UTF-8 encoded).
        status
            The answer's status (a success status by default).
        content_type
            The answer's ``Content-Type``.
        times
            How many requests are garbled (at least 1).
        after
            ``False``: answered before anything is done (nothing changes). ``True``: the
            request is acted on first (a decision is recorded and its answer stored under its
            ``Idempotency-Key``), then its answer is replaced, as by a faulty proxy.

        Raises
        ------
        ValueError
            If ``times`` < 1.
        """
        if times < 1:
            raise ValueError("times must be at least 1")
        raw = body.encode() if isinstance(body, str) else body
        self._garbles.append(
            _Rule(
                method,
                re.compile(path_regex),
                times,
                status=status,
                body=raw,
                content_type=content_type,
                after=after,
            )
        )

    def clear_faults(self) -> None:
        """Forget every rule set by :meth:`fail`, :meth:`delay` and :meth:`garble`."""
        self._faults.clear()
        self._delays.clear()
        self._garbles.clear()

    def set_agents(self, agents: Iterable[Mapping[str, Any]] = (), **counts: int) -> None:
        """Replace the agent fleet shown by ``GET /v1/agents`` and the dashboard.

        Parameters
        ----------
        agents
            Agent objects (contract §1.4); missing fields get defaults.
        **counts
            Shortcut: ``active=2, idle=1, error=0, offline=1`` adds that many default agents
            with each status.

        Raises
        ------
        ValueError
            For an unknown status in ``counts`` or an unknown field in ``agents``.
        """
        fleet = [self._new_agent(dict(a)) for a in agents]
        for status, count in counts.items():
            if status not in AGENT_STATUSES:
                raise ValueError(f"unknown agent status {status!r}")
            fleet.extend(self._new_agent({"status": status}) for _ in range(count))
        self.agents = fleet

    # ================================================================== factory-side actions

    def create_pipeline(self, **fields: Any) -> dict[str, Any]:
        """Add a Pipeline (contract §1.4) with defaults for every field not given.

        Defaults: ``id`` uuid4, ``name`` "Pipeline N", ``slug`` from the name, ``template``
        "mcp-server-standard", ``platform`` "shopify", ``currentStage`` "review", ``status``
        "active", ``priority`` "medium", ``createdBy`` "user-operator", empty config/metadata,
        no SLA, started/created/updated now. Datetime values are converted to ISO strings.

        Returns
        -------
        dict
            A copy of the stored pipeline.

        Raises
        ------
        TypeError
            For a field name that is not in the contract's Pipeline.
        """
        _reject_unknown(fields, _PIPELINE_FIELDS, "Pipeline")
        now = self._now_iso()
        name = fields.get("name") or f"Pipeline {len(self.pipelines) + 1}"
        pipeline: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": name,
            "slug": re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"),
            "template": "mcp-server-standard",
            "platform": "shopify",
            "currentStage": "review",
            "status": "active",
            "priority": "medium",
            "createdBy": "user-operator",
            "assigneeId": None,
            "config": {},
            "metadata": {},
            "slaDeadline": None,
            "startedAt": now,
            "completedAt": None,
            "createdAt": now,
            "updatedAt": now,
        }
        pipeline.update(_isoify(fields))
        self.pipelines[pipeline["id"]] = pipeline
        return copy.deepcopy(pipeline)

    async def create_task(self, *, emit: bool = True, **fields: Any) -> dict[str, Any]:
        """Add a Task (contract §1.4) as the factory would, and announce it.

        Every field not given gets a default: ``id`` uuid4, ``pipelineId`` ``None`` (and
        ``stageName`` the pipeline's ``currentStage`` when a known pipeline is given), ``type``
        "approval", a title, description and ``context`` (summary, passing ``testResults``, a
        small ``diffSummary``), ``status`` "pending", ``priority`` "medium", nothing claimed or
        decided, ``decisionData`` {}, ``slaDeadline`` = ``createdAt`` + :data:`SLA_SECONDS` for
        the priority (contract §5.3) unless given (``None`` allowed), no warnings, not breached,
        ``escalationLevel`` 0, not blocking, created/updated now. Datetimes become ISO strings.

        Parameters
        ----------
        emit
            Emit ``task.created`` ``{"task": task}`` on channel ``tasks:pending`` and wait for its
            delivery (requires :meth:`start`).
        **fields
            Task fields in contract camelCase.

        Returns
        -------
        dict
            A copy of the stored task.

        Raises
        ------
        TypeError
            For a field name that is not in the contract's Task.
        ValueError
            For an unknown ``priority``, ``type`` or ``status``.
        RuntimeError
            If ``emit`` and the emulator is not started.
        """
        _reject_unknown(fields, _TASK_FIELDS, "Task")
        fields = _isoify(fields)
        _check_choice(fields, "priority", PRIORITIES)
        _check_choice(fields, "type", TASK_TYPES)
        _check_choice(fields, "status", TASK_STATUSES)
        if emit:
            self._require_started()
        created = fields.get("createdAt") or self._now_iso()
        priority = fields.get("priority", "medium")
        pipeline_id = fields.get("pipelineId")
        pipeline = self.pipelines.get(pipeline_id) if pipeline_id else None
        number = len(self.tasks) + 1
        task: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "pipelineId": pipeline_id,
            "stageName": (pipeline["currentStage"] if pipeline else "review")
            if pipeline_id
            else None,
            "type": "approval",
            "title": f"Approve release #{number}",
            "description": "Emulated task waiting for a human decision.",
            "context": _default_context(),
            "status": "pending",
            "priority": priority,
            "assigneeId": None,
            "claimedAt": None,
            "claimedBy": None,
            "decision": None,
            "decisionNotes": None,
            "decisionData": {},
            "decidedAt": None,
            "decidedBy": None,
            "slaDeadline": to_iso(_parse_iso(created) + timedelta(seconds=SLA_SECONDS[priority])),
            "slaWarningsSent": 0,
            "slaBreached": False,
            "escalationLevel": 0,
            "blocksStageAdvance": False,
            "blocksPipelineId": None,
            "createdAt": created,
            "updatedAt": fields.get("updatedAt") or created,
        }
        task.update(fields)
        self.tasks[task["id"]] = task
        if emit:
            await self.emit("task.created", {"task": task}, channel="tasks:pending")
        return copy.deepcopy(task)

    async def request_approval(
        self, task_id: str, *, emit: bool = True, include_task: bool = True, **fields: Any
    ) -> dict[str, Any]:
        """Add the ``Approval`` (contract §1.4) behind task ``task_id`` and announce it.

        Defaults: ``id`` uuid4, ``taskId``, ``pipelineId`` and ``stageName`` from the task,
        ``type`` "stage_gate", ``status`` "pending", no conditions, ``requiredApprovers`` 1,
        ``currentApprovers`` 0, created now. ``GET /v1/approvals`` lists it.

        Parameters
        ----------
        task_id
            An existing task's id.
        emit
            Emit ``approval.pending`` ``{"approval", "task"}`` on channel ``approvals`` and wait
            for its delivery (requires :meth:`start`).
        include_task
            Put the task in the event (``False``: the bridge must fetch it).
        **fields
            Approval fields in contract camelCase (``type``, ``requiredApprovers`` …).

        Returns
        -------
        dict
            A copy of the stored approval.

        Raises
        ------
        KeyError
            For an unknown task.
        """
        task = self.tasks[task_id]
        approval: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "taskId": task_id,
            "pipelineId": task.get("pipelineId"),
            "stageName": task.get("stageName"),
            "type": "stage_gate",
            "status": "pending",
            "approvedBy": None,
            "approvedAt": None,
            "rejectionReason": None,
            "conditions": [],
            "requiredApprovers": 1,
            "currentApprovers": 0,
            "createdAt": self._now_iso(),
        }
        approval.update(_isoify(fields))
        self.approvals[approval["id"]] = approval
        if emit:
            self._require_started()
            data: dict[str, Any] = {"approval": approval}
            if include_task:
                data["task"] = task
            await self.emit("approval.pending", data, channel="approvals")
        return copy.deepcopy(approval)

    async def decide_task(
        self,
        task_id: str,
        decision: str = "approved",
        *,
        decided_by: str = "user-dashboard",
        notes: str | None = None,
        emit: bool = True,
    ) -> dict[str, Any]:
        """Decide a task as if someone had on the factory's dashboard (not through the API).

        Parameters
        ----------
        task_id
            Id of a stored task.
        decision
            One of :data:`DECISIONS`.
        decided_by
            Stored in ``decidedBy``.
        notes
            Stored in ``decisionNotes``.
        emit
            Emit ``task.completed`` ``{task, decision, decidedBy}`` on ``tasks:*`` and wait for
            its delivery.

        Returns
        -------
        dict
            A copy of the decided task.

        Raises
        ------
        KeyError
            If there is no such task.
        ValueError
            If ``decision`` is invalid or the task is already completed.
        RuntimeError
            If ``emit`` and the emulator is not started.
        """
        task = self.tasks[task_id]
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        if task["status"] == "completed":
            raise ValueError(f"task {task_id} is already {task['decision']} by {task['decidedBy']}")
        if emit:
            self._require_started()
        self._apply_decision(task, decision, notes=notes, data={}, decided_by=decided_by)
        if emit:
            await self.emit(
                "task.completed",
                {"task": task, "decision": decision, "decidedBy": decided_by},
            )
        return copy.deepcopy(task)

    def sla_payload(self, task_id: str) -> dict[str, Any]:
        """Build the contract §1.6 ``TaskSlaPayload`` for a task, as of the emulator's clock.

        ``minutesRemaining`` is whole minutes rounded down (negative once breached). Use it with
        :meth:`emit` for ``task.sla_warning`` / ``task.sla_breached``.

        Raises
        ------
        KeyError
            If there is no such task.
        ValueError
            If the task has no ``slaDeadline``.
        """
        task = self.tasks[task_id]
        if not task.get("slaDeadline"):
            raise ValueError(f"task {task_id} has no slaDeadline")
        left = _parse_iso(task["slaDeadline"]) - self._clock()
        return {
            "taskId": task["id"],
            "taskTitle": task["title"],
            "pipelineId": task["pipelineId"],
            "slaDeadline": task["slaDeadline"],
            "minutesRemaining": math.floor(left.total_seconds() / 60),
            "escalationLevel": task["escalationLevel"],
        }

    def task_stats(self) -> dict[str, Any]:
        """Compute contract §1.5 ``TaskStats`` as of the emulator's clock.

        Open tasks are those not ``completed``. ``pending`` counts status "pending";
        ``inProgress`` "claimed" or "in_progress"; ``blocked`` open tasks with
        ``blocksStageAdvance``; ``avgWaitTimeMinutes`` the mean age of open tasks (1 decimal);
        ``slaBreaches`` open tasks flagged ``slaBreached`` or past their deadline; ``byPriority``
        and ``byType`` count open tasks and list every contract value.
        """
        now = self._clock()
        open_tasks = [t for t in self.tasks.values() if t["status"] != "completed"]
        ages = [(now - _parse_iso(t["createdAt"])).total_seconds() / 60 for t in open_tasks]
        return {
            "pending": sum(t["status"] == "pending" for t in open_tasks),
            "inProgress": sum(t["status"] in ("claimed", "in_progress") for t in open_tasks),
            "blocked": sum(bool(t.get("blocksStageAdvance")) for t in open_tasks),
            "avgWaitTimeMinutes": round(sum(ages) / len(ages), 1) if ages else 0.0,
            "slaBreaches": sum(_sla_state(t, now) == "breached" for t in open_tasks),
            "byPriority": {p: sum(t["priority"] == p for t in open_tasks) for p in PRIORITIES},
            "byType": {k: sum(t["type"] == k for t in open_tasks) for k in TASK_TYPES},
        }

    def dashboard_summary(self) -> dict[str, Any]:
        """Compute contract §1.5 ``DashboardSummary`` as of the emulator's clock.

        ``slaStatus`` covers open tasks that have a deadline: ``breached`` past it (or flagged),
        ``warning`` with less than :data:`SLA_WARNING_FRACTION` of the SLA left, else
        ``onTrack``. ``recentActivity`` is the last 20 audit entries, newest first.
        """
        now = self._clock()
        sla = {"onTrack": 0, "warning": 0, "breached": 0}
        for task in self.tasks.values():
            state = _sla_state(task, now) if task["status"] != "completed" else None
            if state is not None:
                sla[state] += 1
        agents = {s: sum(a["status"] == s for a in self.agents) for s in AGENT_STATUSES}
        return {
            "pipelines": {
                s: sum(p["status"] == s for p in self.pipelines.values())
                for s in ("active", "paused", "completed", "failed")
            },
            "tasks": self.task_stats(),
            "agents": {"total": len(self.agents), **agents},
            "recentActivity": copy.deepcopy(self.audit[-20:][::-1]),
            "slaStatus": sla,
        }

    # ================================================================== events

    async def emit(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        channel: str = "tasks:*",
        event_id: str | None = None,
    ) -> list[DeliveryResult]:
        """Deliver one WsEvent ``{type, timestamp, channel, data}`` and wait until it is out.

        It goes (a) to every WebSocket subscribed to a matching channel and (b) as a signed
        webhook POST to ``webhook_url``, if set. Failures are recorded in the results (and in
        :attr:`deliveries`), never raised.

        Parameters
        ----------
        event_type
            Contract §1.6 ``WebSocketEventType``, e.g. ``"task.sla_warning"``.
        data
            The payload (deep-copied at once, so later changes do not leak in).
        channel
            The event's channel.
        event_id
            ``X-Factory-Event-Id``; a fresh ``evt_<hex>`` by default. Reuse one to test
            duplicate-delivery handling.

        Returns
        -------
        list[DeliveryResult]
            One per WebSocket subscriber reached, then one for the webhook.

        Raises
        ------
        RuntimeError
            If the emulator is not started.
        """
        self._require_started()
        future: asyncio.Future[list[DeliveryResult]] = asyncio.get_running_loop().create_future()
        self._enqueue(event_type, data, channel, event_id, future)
        return await future

    async def drain_events(self) -> None:
        """Wait until every queued event (including those caused by API calls) is delivered."""
        if self._queue is not None:
            await self._queue.join()

    async def deliver_raw(self, body: bytes, headers: Mapping[str, str]) -> int:
        """POST arbitrary bytes with arbitrary headers to ``webhook_url``.

        For testing the receiver against bad signatures, stale timestamps, garbage bodies.

        Returns
        -------
        int
            The HTTP status the receiver answered.

        Raises
        ------
        RuntimeError
            If the emulator is not started or has no ``webhook_url``.
        httpx.HTTPError
            If the receiver cannot be reached.
        """
        self._require_started()
        assert self._http is not None
        if self.webhook_url is None:
            raise RuntimeError("FactoryEmulator has no webhook_url")
        response = await self._http.post(self.webhook_url, content=body, headers=dict(headers))
        return response.status_code

    async def drop_websockets(self, *, abrupt: bool = False) -> None:
        """Close every open WebSocket connection (for reconnect tests).

        Parameters
        ----------
        abrupt
            ``False``: send a close frame with code 1001 (going away). ``True``: cut the TCP
            connection without a close frame, like a network failure.
        """
        conns = list(self._ws_conns)
        self._ws_conns.clear()
        if abrupt:
            for conn in conns:
                if conn.request.transport is not None:
                    conn.request.transport.close()
            return
        await asyncio.gather(
            *(
                conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"dropped by emulator")
                for conn in conns
            ),
            return_exceptions=True,
        )

    def _require_started(self) -> None:
        if self._queue is None:
            raise RuntimeError("start() the FactoryEmulator before emitting events")

    def _enqueue(
        self,
        event_type: str,
        data: dict[str, Any],
        channel: str,
        event_id: str | None = None,
        future: asyncio.Future[list[DeliveryResult]] | None = None,
    ) -> None:
        self._require_started()
        assert self._queue is not None
        event = {
            "type": event_type,
            "timestamp": self._now_iso(),
            "channel": channel,
            "data": copy.deepcopy(data),
        }
        self._queue.put_nowait((event, event_id or f"evt_{uuid.uuid4().hex}", future))

    async def _delivery_worker(self, queue: asyncio.Queue[_Queued]) -> None:
        while True:
            event, event_id, future = await queue.get()
            try:
                results = await self._deliver(event, event_id)
                self.deliveries.extend(results)
                if future is not None and not future.done():
                    future.set_result(results)
            except Exception as exc:  # keep the worker alive whatever happens
                _log.exception("factory emulator: delivering %s failed", event["type"])
                if future is not None and not future.done():
                    future.set_exception(exc)
            finally:
                queue.task_done()

    async def _deliver(self, event: dict[str, Any], event_id: str) -> list[DeliveryResult]:
        body = _dumps(event)
        event_type = event["type"]
        results: list[DeliveryResult] = []
        for conn in list(self._ws_conns):
            if not any(_channel_matches(s, event["channel"]) for s in conn.channels):
                continue
            try:
                await conn.ws.send_str(body.decode())
                results.append(DeliveryResult(event_id, event_type, "websocket"))
            except (ConnectionError, RuntimeError) as exc:
                results.append(DeliveryResult(event_id, event_type, "websocket", error=repr(exc)))
        targets: dict[str, str | None] = {}
        if self.webhook_url is not None:
            targets[self.webhook_url] = self.webhook_secret
        for hook in self.webhooks.values():
            if hook["active"] and event_type in hook["events"]:
                targets[hook["url"]] = hook["secret"]
        for url, secret in targets.items():
            results.append(await self._post_webhook(url, secret, body, event_id, event_type))
        return results

    async def _post_webhook(
        self, url: str, secret: str | None, body: bytes, event_id: str, event_type: str
    ) -> DeliveryResult:
        assert self._http is not None
        timestamp = int(self._clock().timestamp())
        headers = {"Content-Type": _JSON_TYPE, "User-Agent": "factory-emulator/1"}
        if secret:
            headers.update(signed_headers(secret, body, event_id=event_id, timestamp=timestamp))
        else:
            headers.update({EVENT_ID_HEADER: event_id, TIMESTAMP_HEADER: str(timestamp)})
        try:
            response = await self._http.post(url, content=body, headers=headers)
            return DeliveryResult(event_id, event_type, "webhook", status=response.status_code)
        except httpx.HTTPError as exc:
            return DeliveryResult(event_id, event_type, "webhook", error=repr(exc))

    # ================================================================== HTTP plumbing

    def _now_iso(self) -> str:
        return to_iso(self._clock())

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            json=parsed,
            body=raw,
            status=0,
            at=self._clock(),
        )
        self.requests.append(record)
        request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        response: web.StreamResponse
        try:
            for rule in self._delays:
                if rule.take(request.method, request.path):
                    await asyncio.sleep(rule.seconds)
                    if rule.drop:
                        raise _ApiError(504, "TIMEOUT", "request held and dropped")
                    break
            self._raise_injected_fault(request.method, request.path)
            if request.path == "/v1/ws" and request.method == "GET":
                return await self._websocket(request, record)
            garbled = self._garbled(request.method, request.path, after=False)
            response = garbled or await self._api(request, raw, request_id)
            if garbled is None:
                response = self._garbled(request.method, request.path, after=True) or response
        except _ApiError as err:
            response = self._error_response(err, request_id)
        except Exception:
            _log.exception(
                "factory emulator: handler failed for %s %s", request.method, request.path
            )
            response = self._error_response(
                _ApiError(500, "INTERNAL_ERROR", "emulator handler failed"), request_id
            )
        record.status = response.status
        response.headers["X-Request-Id"] = request_id
        response.headers["X-API-Version"] = "1"
        return response

    def _garbled(self, method: str, path: str, *, after: bool) -> web.Response | None:
        for rule in self._garbles:
            if rule.after is after and rule.take(method, path):
                return web.Response(
                    body=rule.body, status=rule.status, content_type=rule.content_type
                )
        return None

    def _raise_injected_fault(self, method: str, path: str) -> None:
        for rule in self._faults:
            if rule.take(method, path):
                details: dict[str, Any] = {"injected": True}
                headers: dict[str, str] = {}
                if rule.retry_after is not None:
                    details["retryAfterSeconds"] = rule.retry_after
                    headers["Retry-After"] = f"{rule.retry_after:g}"
                code = _ERROR_CODES.get(rule.status) or (
                    "INTERNAL_ERROR" if rule.status >= 500 else "BAD_REQUEST"
                )
                raise _ApiError(
                    rule.status,
                    code,
                    f"injected failure: {code}",
                    details=details,
                    headers=headers,
                )

    def _authorized(self, key: str | None) -> bool:
        return key is not None and hmac.compare_digest(key.encode(), self.api_key.encode())

    def _meta(self, request_id: str) -> dict[str, Any]:
        return {"requestId": request_id, "timestamp": self._now_iso()}

    def _error_response(self, err: _ApiError, request_id: str) -> web.Response:
        error: dict[str, Any] = {"code": err.code, "message": err.message}
        if err.field is not None:
            error["field"] = err.field
        if err.details is not None:
            error["details"] = err.details
        error["requestId"] = request_id
        return web.Response(
            body=_dumps({"ok": False, "error": error}),
            status=err.status,
            content_type=_JSON_TYPE,
            headers=err.headers,
        )

    async def _api(self, request: web.Request, raw: bytes, request_id: str) -> web.Response:
        if not self._authorized(request.headers.get("X-API-Key")):
            raise _ApiError(401, "UNAUTHORIZED", "missing or invalid X-API-Key header")
        handler, params = self._resolve(request.method, request.path)
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        if not key:
            return await self._invoke(handler, params, request, raw, request_id)
        lock = self._idempotency_locks.setdefault(key, asyncio.Lock())
        async with lock:
            stored = self._idempotent.get(key)
            if stored is not None and self._clock() - stored.at < IDEMPOTENCY_TTL:
                return web.Response(
                    body=stored.body,
                    status=stored.status,
                    content_type=_JSON_TYPE,
                    headers={"Idempotent-Replayed": "true"},
                )
            try:
                response = await self._invoke(handler, params, request, raw, request_id)
            except _ApiError as err:
                response = self._error_response(err, request_id)
            if response.status != 400 and isinstance(response.body, bytes):
                self._idempotent[key] = _Stored(response.status, response.body, self._clock())
            return response

    def _resolve(self, method: str, path: str) -> tuple[_Handler, dict[str, str]]:
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is not None and route_method == method:
                return handler, match.groupdict()
        raise _ApiError(404, "NOT_FOUND", f"no route for {method} {path}")

    async def _invoke(
        self,
        handler: _Handler,
        params: dict[str, str],
        request: web.Request,
        raw: bytes,
        request_id: str,
    ) -> web.Response:
        body: dict[str, Any] = {}
        if request.method == "POST" and raw.strip():
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise _ApiError(400, "BAD_REQUEST", "request body is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise _ApiError(400, "BAD_REQUEST", "request body must be a JSON object")
            body = parsed
        call = _Call(params, request.query, body)
        data, pagination = await handler(call)
        if call.status == 204:
            return web.Response(status=204)
        meta = self._meta(request_id)
        if pagination is not None:
            meta["pagination"] = pagination
        return web.Response(
            body=_dumps({"ok": True, "data": data, "meta": meta}),
            status=call.status,
            content_type=_JSON_TYPE,
        )

    # ================================================================== WebSocket

    async def _websocket(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=2.0)
        if not ws.can_prepare(request).ok:
            raise _ApiError(400, "BAD_REQUEST", "expected a WebSocket upgrade")
        await ws.prepare(request)
        method = self._ws_authenticate(request)
        if method is None:
            record.status = 401
            await ws.send_json(
                {
                    "type": "error",
                    "error": {"code": "UNAUTHORIZED", "message": "missing or invalid API key"},
                }
            )
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unauthorized")
            return ws
        record.status = 101
        self.ws_auth.append(method)
        conn = _WsConn(ws, request)
        self._ws_conns.add(conn)
        self.ws_connect_count += 1
        pinger = asyncio.create_task(self._ping_loop(ws)) if self.ws_ping_interval_seconds else None
        try:
            with contextlib.suppress(ConnectionError):
                async for message in ws:
                    if message.type is WSMsgType.TEXT:
                        await self._on_ws_text(conn, message.data)
                    elif message.type is WSMsgType.BINARY:
                        await _ws_error(ws, "BAD_REQUEST", "binary frames are not supported")
        finally:
            if pinger is not None:
                pinger.cancel()
            self._ws_conns.discard(conn)
        return ws

    def _ws_authenticate(self, request: web.Request) -> str | None:
        """How a WebSocket handshake authenticated (see :attr:`ws_auth`), ``None`` if not."""
        token = request.query.get("token")
        if token is not None and self.ws_jwt_secret is not None:
            try:
                claims = jwt.decode(
                    token,
                    self.ws_jwt_secret,
                    algorithms=["HS256"],
                    # expiry is checked below against the emulator's clock, not the host's
                    options={"require": ["exp", "sub"], "verify_exp": False},
                )
            except jwt.PyJWTError:
                return None
            expired = float(claims["exp"]) <= self._clock().timestamp()
            allowed = "tasks:read" in (claims.get("scopes") or [])
            return "jwt" if allowed and not expired else None
        if token is not None and self._authorized(token):
            return "token"
        return "api-key" if self._authorized(request.headers.get("X-API-Key")) else None

    def ws_token(self, *, expires_in_seconds: float = 900.0, scopes: Iterable[str] = ()) -> str:
        """A JWT the WebSocket accepts (contract §1.2 ``JWTPayload``), signed HS256.

        Parameters
        ----------
        expires_in_seconds
            ``exp`` relative to the emulator's clock (the contract's default life is 900 s);
            negative for an expired token.
        scopes
            ``scopes`` claim; ``tasks:read`` is always included.

        Raises
        ------
        RuntimeError
            If the emulator has no ``ws_jwt_secret``.
        """
        if self.ws_jwt_secret is None:
            raise RuntimeError("FactoryEmulator has no ws_jwt_secret")
        now = self._clock()
        payload = {
            "sub": "bridge-service",
            "email": "bridge@factory.local",
            "role": "operator",
            "scopes": ["tasks:read", *scopes],
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp() + expires_in_seconds),
        }
        return jwt.encode(payload, self.ws_jwt_secret, algorithm="HS256")

    async def _ping_loop(self, ws: web.WebSocketResponse) -> None:
        assert self.ws_ping_interval_seconds
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not ws.closed:
                await asyncio.sleep(self.ws_ping_interval_seconds)
                await ws.send_json({"type": "ping"})

    async def _on_ws_text(self, conn: _WsConn, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            await _ws_error(conn.ws, "BAD_REQUEST", "message is not valid JSON")
            return
        if not isinstance(message, dict):
            await _ws_error(conn.ws, "BAD_REQUEST", "message must be a JSON object")
            return
        self.ws_messages.append(message)
        kind = message.get("type")
        if kind in ("subscribe", "unsubscribe"):
            channels = message.get("channels")
            if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
                await _ws_error(conn.ws, "VALIDATION_ERROR", "channels must be a list of strings")
                return
            wanted = list(dict.fromkeys(channels))
            if kind == "subscribe":
                conn.channels.update(wanted)
                await conn.ws.send_json({"type": "subscribed", "channels": wanted})
            else:
                conn.channels.difference_update(wanted)
        elif kind == "ping":
            await conn.ws.send_json({"type": "pong"})
        elif kind == "pong":
            self.ws_pongs_received += 1
        else:
            await _ws_error(conn.ws, "BAD_REQUEST", f"unknown message type {kind!r}")

    # ================================================================== REST handlers

    def _task_or_404(self, task_id: str) -> dict[str, Any]:
        task = self.tasks.get(task_id)
        if task is None:
            raise _ApiError(404, "NOT_FOUND", f"task {task_id} not found")
        return task

    def _conflict_if_completed(self, task: dict[str, Any]) -> None:
        if task["status"] == "completed":
            raise _ApiError(
                409,
                "CONFLICT",
                f"task already {task['decision']} by {task['decidedBy']}",
                details={
                    "currentState": "completed",
                    "decision": task["decision"],
                    "decidedBy": task["decidedBy"],
                    "decidedAt": task["decidedAt"],
                },
            )

    async def _list_tasks(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        page, limit = _pagination(call.query)
        # Paging on: pages after the first read the list the first page made (a listing of
        # 100,000 tasks is one sort, not one per page). Which tasks are listed is fixed at the
        # first page, as with a cursor; each one's fields are current.
        key = tuple(sorted((k, v) for k, v in call.query.items() if k not in ("page", "limit")))
        cached = self._task_listing
        if page > 1 and cached is not None and cached[0] == key:
            return _paginate(cached[1], page, limit)
        items = list(self.tasks.values())
        for name in ("status", "priority", "type", "pipelineId", "assigneeId"):
            if name in call.query:
                items = [t for t in items if t.get(name) == call.query[name]]
        if "slaBreached" in call.query:
            wanted = _parse_bool(call.query["slaBreached"], "slaBreached")
            items = [t for t in items if bool(t.get("slaBreached")) is wanted]
        listed = _sort(items, call.query.get("sort"), _TASK_FIELDS)
        self._task_listing = (key, listed)
        return _paginate(listed, page, limit)

    async def _get_task_stats(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        return self.task_stats(), None

    async def _get_task(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        return self._task_or_404(call.params["id"]), None

    async def _claim(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        task = self._task_or_404(call.params["id"])
        user = _optional_str(call.body, "userId") or "api-key"
        self._conflict_if_completed(task)
        now = self._now_iso()
        before = task["status"]
        task.update(status="claimed", claimedAt=now, claimedBy=user, updatedAt=now)
        self._audit("task.claimed", task, user, {"status": {"from": before, "to": "claimed"}})
        self._enqueue("task.claimed", {"task": task}, "tasks:*")
        return task, None

    async def _complete(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        task = self._task_or_404(call.params["id"])
        decision = call.body.get("decision")
        if decision not in DECISIONS:
            raise _validation_error(
                "decision", "decision must be one of " + ", ".join(DECISIONS), decision, "enum"
            )
        notes = _optional_str(call.body, "notes")
        data = _optional_object(call.body, "decisionData")
        self._conflict_if_completed(task)
        decided_by = _decider(data)
        self._apply_decision(task, decision, notes=notes, data=data, decided_by=decided_by)
        self._enqueue(
            "task.completed",
            {"task": task, "decision": decision, "decidedBy": decided_by},
            "tasks:*",
        )
        return task, None

    async def _reassign(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        task = self._task_or_404(call.params["id"])
        assignee = call.body.get("assigneeId")
        if not isinstance(assignee, str) or not assignee:
            raise _validation_error(
                "assigneeId", "assigneeId is required", assignee, "non-empty string"
            )
        reason = _optional_str(call.body, "reason")
        self._conflict_if_completed(task)
        before = task["assigneeId"]
        task.update(assigneeId=assignee, updatedAt=self._now_iso())
        self._audit(
            "task.reassigned",
            task,
            "api-key",
            {"assigneeId": {"from": before, "to": assignee}},
            metadata={"reason": reason},
        )
        return task, None

    async def _bulk(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        action = call.body.get("action")
        if action not in BULK_ACTIONS:
            raise _validation_error(
                "action", "action must be one of approve, reject, defer", action, "enum"
            )
        task_ids = call.body.get("taskIds")
        if (
            not isinstance(task_ids, list)
            or not task_ids
            or not all(isinstance(i, str) for i in task_ids)
        ):
            raise _validation_error(
                "taskIds", "taskIds must be a non-empty list of ids", task_ids, "string[]"
            )
        notes = _optional_str(call.body, "notes")
        data = _optional_object(call.body, "decisionData")
        decided_by = _decider(data)
        decision = BULK_ACTIONS[action]
        succeeded: list[str] = []
        failed: list[dict[str, str]] = []
        for task_id in task_ids:
            task = self.tasks.get(task_id)
            if task is None:
                failed.append({"taskId": task_id, "error": "NOT_FOUND"})
            elif task["status"] == "completed":
                error = f"CONFLICT: already {task['decision']} by {task['decidedBy']}"
                failed.append({"taskId": task_id, "error": error})
            else:
                self._apply_decision(task, decision, notes=notes, data=data, decided_by=decided_by)
                succeeded.append(task_id)
                self._enqueue(
                    "task.completed",
                    {"task": task, "decision": decision, "decidedBy": decided_by},
                    "tasks:*",
                )
        return {"succeeded": succeeded, "failed": failed}, None

    async def _list_approvals(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        page, limit = _pagination(call.query)
        items = list(self.approvals.values())
        for name in ("status", "pipelineId"):
            if name in call.query:
                items = [a for a in items if a.get(name) == call.query[name]]
        return _paginate(items, page, limit)

    async def _escalate(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        approval = self.approvals.get(call.params["id"])
        if approval is None:
            raise _ApiError(404, "NOT_FOUND", f"approval {call.params['id']} not found")
        reason = call.body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise _validation_error("reason", "reason is required", reason, "non-empty string")
        escalate_to = _optional_str(call.body, "escalateTo")
        task = self._task_or_404(approval["taskId"])
        self._conflict_if_completed(task)
        if approval["status"] != "pending":
            raise _ApiError(
                409,
                "CONFLICT",
                f"approval already {approval['status']}",
                details={"currentState": approval["status"]},
            )
        before = task["escalationLevel"]
        level = min(4, before + 1)
        changes: dict[str, Any] = {"escalationLevel": {"from": before, "to": level}}
        task.update(escalationLevel=level, updatedAt=self._now_iso())
        if escalate_to:
            changes["assigneeId"] = {"from": task["assigneeId"], "to": escalate_to}
            task["assigneeId"] = escalate_to
        self._audit("task.escalated", task, "api-key", changes, metadata={"reason": reason})
        self.escalations.append(
            {
                "approvalId": approval["id"],
                "taskId": task["id"],
                "reason": reason,
                "escalateTo": escalate_to,
                "escalationLevel": level,
            }
        )
        return {**approval, "escalationLevel": level}, None

    async def _list_pipelines(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        page, limit = _pagination(call.query)
        items = list(self.pipelines.values())
        filters = {
            "status": "status",
            "stage": "currentStage",
            "priority": "priority",
            "assigneeId": "assigneeId",
        }
        for param, key in filters.items():
            if param in call.query:
                items = [p for p in items if p.get(key) == call.query[param]]
        if call.query.get("search"):
            needle = call.query["search"].lower()
            items = [p for p in items if needle in p["name"].lower() or needle in p["slug"]]
        return _paginate(_sort(items, call.query.get("sort"), _PIPELINE_FIELDS), page, limit)

    async def _get_pipeline(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        pipeline = self.pipelines.get(call.params["id"])
        if pipeline is None:
            raise _ApiError(404, "NOT_FOUND", f"pipeline {call.params['id']} not found")
        return pipeline, None

    async def _list_agents(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        return self.agents, None

    async def _get_dashboard(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        return self.dashboard_summary(), None

    # ================================================================== state helpers

    async def _list_webhooks(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        return [_public_webhook(h) for h in self.webhooks.values()], None

    async def _webhook_events(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        return list(WEBHOOK_EVENT_TYPES), None

    async def _create_webhook(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        body = call.body
        _reject_unknown(body, ("url", "events", "secret"), "CreateWebhookBody")
        url = body.get("url")
        if not isinstance(url, str) or not re.match(r"^https?://[^\s]+$", url):
            raise _validation_error("url", "must be an http(s) URL", url, "string")
        events = body.get("events")
        if (
            not isinstance(events, list)
            or not events
            or any(e not in WEBHOOK_EVENT_TYPES for e in events)
        ):
            raise _validation_error(
                "events", "must be a non-empty list of event types", events, "WebSocketEventType[]"
            )
        secret = body.get("secret")
        if not isinstance(secret, str) or not secret:
            raise _validation_error("secret", "must be a non-empty string", None, "string")
        hook_id = f"wh_{uuid.uuid4().hex[:12]}"
        hook: dict[str, Any] = {
            "id": hook_id,
            "url": url,
            "events": list(dict.fromkeys(events)),
            "secret": secret,
            "active": True,
            "createdAt": self._now_iso(),
        }
        self.webhooks[hook_id] = hook
        call.status = 201
        return _public_webhook(hook), None

    async def _delete_webhook(self, call: _Call) -> tuple[Any, dict[str, Any] | None]:
        if self.webhooks.pop(call.params["id"], None) is None:
            raise _ApiError(404, "NOT_FOUND", f"webhook {call.params['id']} not found")
        call.status = 204
        return None, None

    def _apply_decision(
        self,
        task: dict[str, Any],
        decision: str,
        *,
        notes: str | None,
        data: dict[str, Any],
        decided_by: str,
    ) -> None:
        now = self._now_iso()
        before = task["status"]
        task.update(
            status="completed",
            decision=decision,
            decisionNotes=notes,
            decisionData=copy.deepcopy(data),
            decidedAt=now,
            decidedBy=decided_by,
            updatedAt=now,
        )
        for approval in self.approvals.values():
            if approval["taskId"] == task["id"] and approval["status"] == "pending":
                approval["status"] = {"approved": "approved", "rejected": "rejected"}.get(
                    decision, "expired"
                )
        self._audit(
            f"task.{decision}",
            task,
            decided_by,
            {
                "status": {"from": before, "to": "completed"},
                "decision": {"from": None, "to": decision},
            },
        )

    def _audit(
        self,
        action: str,
        task: dict[str, Any],
        actor: str,
        changes: dict[str, Any],
        *,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.audit.append(
            {
                "id": str(uuid.uuid4()),
                "actorType": "system" if actor == "api-key" else "user",
                "actorId": actor,
                "actorName": actor,
                "action": action,
                "entityType": "task",
                "entityId": task["id"],
                "changes": changes,
                "metadata": metadata or {},
                "createdAt": self._now_iso(),
            }
        )

    def _new_agent(self, fields: dict[str, Any]) -> dict[str, Any]:
        _reject_unknown(fields, _AGENT_FIELDS, "Agent")
        _check_choice(fields, "status", AGENT_STATUSES)
        now = self._now_iso()
        agent: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "name": f"agent-{len(self.agents) + 1}",
            "type": "ai_builder",
            "status": "idle",
            "currentTaskId": None,
            "currentPipelineId": None,
            "health": {
                "uptimeSeconds": 0,
                "tasksCompleted24h": 0,
                "errorRate": 0.0,
                "lastHeartbeat": now,
            },
            "capabilities": [],
            "config": {},
            "tasksCompletedTotal": 0,
            "avgTaskDurationSeconds": None,
            "createdAt": now,
            "updatedAt": now,
        }
        agent.update(_isoify(fields))
        return agent


# ====================================================================== module helpers


async def _ws_error(ws: web.WebSocketResponse, code: str, message: str) -> None:
    await ws.send_json({"type": "error", "error": {"code": code, "message": message}})


#: Event types a webhook may subscribe to (contract §1.6 ``WebSocketEventType``).
WEBHOOK_EVENT_TYPES = (
    "pipeline.created",
    "pipeline.updated",
    "pipeline.stage_changed",
    "pipeline.completed",
    "pipeline.failed",
    "pipeline.blocked",
    "task.created",
    "task.claimed",
    "task.completed",
    "task.escalated",
    "task.sla_warning",
    "task.sla_breached",
    "approval.pending",
    "approval.approved",
    "approval.rejected",
    "agent.status_changed",
    "agent.heartbeat",
    "asset.created",
    "asset.updated",
    "deploy.started",
    "deploy.succeeded",
    "deploy.failed",
    "feedback.received",
    "feedback.processed",
)


def _public_webhook(hook: Mapping[str, Any]) -> dict[str, Any]:
    """A webhook as the API shows it: everything but the secret."""
    return {k: v for k, v in hook.items() if k != "secret"}


def _reject_unknown(fields: Mapping[str, Any], allowed: Iterable[str], entity: str) -> None:
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise TypeError(f"unknown {entity} field(s): {', '.join(unknown)}")


def _check_choice(fields: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> None:
    if name in fields and fields[name] not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {fields[name]!r}")


def _isoify(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: to_iso(v) if isinstance(v, datetime) else v for k, v in fields.items()}


def _default_context() -> dict[str, Any]:
    return {
        "summary": "Build passed; ready for review.",
        "testResults": {
            "total": 48,
            "passed": 48,
            "failed": 0,
            "skipped": 0,
            "coveragePercent": 87.5,
            "failureDetails": [],
        },
        "diffSummary": {
            "filesChanged": 2,
            "insertions": 120,
            "deletions": 8,
            "files": [
                {"path": "src/server.ts", "status": "modified", "insertions": 100, "deletions": 8},
                {"path": "README.md", "status": "added", "insertions": 20, "deletions": 0},
            ],
        },
    }


def _sla_state(task: Mapping[str, Any], now: datetime) -> str | None:
    deadline_text = task.get("slaDeadline")
    if not deadline_text:
        return None
    deadline = _parse_iso(deadline_text)
    if task.get("slaBreached") or now > deadline:
        return "breached"
    total = (deadline - _parse_iso(task["createdAt"])).total_seconds()
    if total > 0 and (deadline - now).total_seconds() < SLA_WARNING_FRACTION * total:
        return "warning"
    return "onTrack"


def _decider(data: Mapping[str, Any]) -> str:
    for key in ("factoryUserId", "discordUsername"):
        if data.get(key):
            return str(data[key])
    return "api-key"


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise _validation_error(name, f"{name} must be a string", value, "string")
    return value


def _optional_object(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _validation_error(name, f"{name} must be an object", value, "object")
    return value


def _parse_bool(text: str, name: str) -> bool:
    if text in ("true", "false"):
        return text == "true"
    raise _validation_error(name, f"{name} must be true or false", text, "boolean")


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _validation_error(
            name, f"{name} must be an integer from {low} to {high}", text, f"{low}..{high}"
        )
    return value


def _pagination(query: Mapping[str, str]) -> tuple[int, int]:
    """Contract §1.3 ``PaginationParams``: page ≥ 1 (default 1), limit 1–100 (default 20)."""
    return _int_param(query, "page", 1, 1, 10**9), _int_param(query, "limit", 20, 1, 100)


def _sort(items: list[dict[str, Any]], sort: str | None, fields: Iterable[str]) -> list[Any]:
    """Stable sort by ``sort`` (``field`` or ``-field``; default ``createdAt`` ascending)."""
    spec = sort or "createdAt"
    name = spec.removeprefix("-")
    if name not in fields:
        raise _validation_error("sort", f"cannot sort by {name!r}", spec, "a field name")
    present = [i for i in items if i.get(name) is not None]
    missing = [i for i in items if i.get(name) is None]
    present.sort(key=lambda i: i[name], reverse=spec.startswith("-"))
    return present + missing


def _paginate(items: list[Any], page: int, limit: int) -> tuple[list[Any], dict[str, Any]]:
    total = len(items)
    total_pages = math.ceil(total / limit)
    meta = {
        "page": page,
        "limit": limit,
        "total": total,
        "totalPages": total_pages,
        "hasNext": page < total_pages,
        "hasPrev": page > 1,
    }
    return items[(page - 1) * limit : page * limit], meta
