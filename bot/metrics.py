"""The bridge's Prometheus metrics (``GET /metrics``), with prometheus-client.

One :class:`BridgeMetrics` per process, on its own ``CollectorRegistry`` (no global state:
tests build several bridges in one interpreter). Everything is named ``factory_bridge_…``.
The metrics are fed through narrow seams, so no business module imports this one:

- the audit trail (:meth:`BridgeMetrics.observe_audit`, registered with
  ``Store.add_audit_observer``): decisions, acknowledgements, escalation deliveries;
- the ladder service's ``step_taken`` hook: steps taken, their lateness, SLA breaches;
- the HTTP intake: events accepted, duplicated or refused (:meth:`observe_event`);
- httpx's response hook on the factory client (:meth:`observe_factory_response`);
- discord.py: its ``HTTPClient.request`` is wrapped (:meth:`instrument_discord`) and its
  "We are being rate limited" warnings are counted by a logging handler; interaction
  callbacks go through discord.py's webhook adapter (``discord.webhook.async_``), whose
  ``create_interaction_response`` is timed by an adapter set in the app's context;
- the Twilio pager's ``observe`` hook (:meth:`observe_twilio`);
- the leader lease (:mod:`bot.leadership`): ``factory_bridge_is_leader`` (:meth:`set_leader`);
- gauges read when ``/metrics`` is scraped (:meth:`render`: open tasks per priority, the
  event queue's depth).

Metric types and naming follow Prometheus' conventions ("Metric and label naming",
prometheus.io/docs/practices/naming): counters end in ``_total``, durations are seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["DECISION_SOURCES", "BridgeMetrics", "factory_endpoint"]

log = logging.getLogger(__name__)

#: Audit ``via`` → the ``source`` label of a decision.
DECISION_SOURCES: Mapping[str, str] = {
    "button": "button",
    "modal": "button",
    "select": "button",
    "command": "command",
    "bulk": "bulk",
    "sms": "sms",
    "dashboard": "dashboard",
    "system": "escalation",
    "escalation": "escalation",
    # a decision left in flight (a timeout, a restart) and settled by a re-send: who clicked
    # is kept, not how (bot.decision_send.DecisionSender.resume_decision)
    "resume": "resume",
}

#: Decisions the factory records (contract §1.4 ``decision``).
_DECISIONS = frozenset({"approved", "rejected", "deferred"})

#: Buckets of human response times (seconds): a minute to three days.
_HUMAN_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200)

#: Buckets of machine latencies (seconds).
_FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: Buckets of interaction acknowledgements (seconds), around Discord's 3 s deadline.
_ACK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 5, 10)

#: Factory API collections whose next path segment is an id (contract §1.5).
_COLLECTIONS = frozenset({"tasks", "pipelines", "approvals", "webhooks", "agents", "deploys"})
_NOT_IDS = frozenset({"stats", "bulk", "events", "summary"})


def factory_endpoint(request: httpx.Request) -> str:
    """The route of a factory API request, ids replaced: ``POST tasks/{id}/complete``.

    Parameters
    ----------
    request:
        The request httpx sent (its URL path below ``/v1/`` is used, still percent-encoded:
        an id holding ``/`` is sent as one segment, ``acme%2Fstripe-mcp``, and must stay one
        ``{id}``, or each such id would be a label value of its own).
    """
    path = request.url.raw_path.split(b"?", 1)[0].decode("ascii", "replace")
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "v1":
        parts = parts[1:]
    out: list[str] = []
    for index, part in enumerate(parts):
        after_collection = index > 0 and parts[index - 1] in _COLLECTIONS
        out.append("{id}" if after_collection and part not in _NOT_IDS else part)
    return f"{request.method} {'/'.join(out)}"


class _RateLimitCounter(logging.Handler):
    """Counts discord.py's warnings that a request got 429 (``discord.http``)."""

    def __init__(self, counter: Counter) -> None:
        super().__init__(level=logging.WARNING)
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        message = str(record.msg)
        if message.startswith(("We are being rate limited", "Global rate limit")):
            self.counter.inc()


class BridgeMetrics:
    """Every metric of one bridge process, on its own registry.

    Parameters
    ----------
    open_tasks:
        Returns the number of open tasks per priority (read at each scrape); optional.
    queue_depth:
        Coroutine function returning the number of events stored but not yet handled (read at
        each scrape: the store's count, not only what one process holds in memory); optional.
    task_timing:
        ``task_id`` → ``(priority, created_at)`` of a task (aware UTC), or ``None``: used to
        observe the time to decision and to acknowledge; optional.
    clock:
        Current aware UTC time.
    """

    def __init__(
        self,
        *,
        open_tasks: Callable[[], Awaitable[Mapping[str, int]]] | None = None,
        queue_depth: Callable[[], Awaitable[int]] | None = None,
        task_timing: Callable[[str], Awaitable[tuple[str, datetime] | None]] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.tasks_open = Gauge(
            "factory_bridge_tasks_open", "Tasks waiting for a decision", ["priority"], registry=r
        )
        self.sla_breaches = Counter(
            "factory_bridge_sla_breaches",
            "SLA breaches (the ladder's breach step)",
            ["priority"],
            registry=r,
        )
        self.decisions = Counter(
            "factory_bridge_decisions",
            "Decisions the factory confirmed",
            ["decision", "source"],
            registry=r,
        )
        self.decision_failures = Counter(
            "factory_bridge_decision_failures",
            "Decisions not confirmed (failed or unknown outcome)",
            ["source"],
            registry=r,
        )
        self.time_to_decision = Histogram(
            "factory_bridge_time_to_decision_seconds",
            "From the task's creation to its confirmed decision",
            ["priority"],
            buckets=_HUMAN_BUCKETS,
            registry=r,
        )
        self.time_to_acknowledge = Histogram(
            "factory_bridge_time_to_acknowledge_seconds",
            "From the task's creation to its first acknowledgement",
            ["priority"],
            buckets=_HUMAN_BUCKETS,
            registry=r,
        )
        self.escalation_steps = Counter(
            "factory_bridge_escalation_steps",
            "Ladder steps taken",
            ["step", "outcome"],
            registry=r,
        )
        self.escalation_deliveries = Counter(
            "factory_bridge_escalation_deliveries",
            "Ladder deliveries by channel and result",
            ["channel", "status"],
            registry=r,
        )
        self.ladder_lateness = Histogram(
            "factory_bridge_ladder_lateness_seconds",
            "Step taken minus step due",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.events = Counter(
            "factory_bridge_events", "Factory events received", ["source", "outcome"], registry=r
        )
        self._event_counters: dict[tuple[str, str], Any] = {}
        self.event_queue_depth = Gauge(
            "factory_bridge_event_queue_depth", "Events stored, not yet handled", registry=r
        )
        self.discord_requests = Counter(
            "factory_bridge_discord_requests",
            "Discord API requests",
            ["route", "status"],
            registry=r,
        )
        self.discord_rate_limited = Counter(
            "factory_bridge_discord_rate_limited", "Discord answers 429 (retried)", registry=r
        )
        self.interaction_ack = Histogram(
            "factory_bridge_interaction_ack_seconds",
            "From Discord creating an interaction (its snowflake) to our initial response "
            "being accepted (Discord's deadline: 3 s)",
            buckets=_ACK_BUCKETS,
            registry=r,
        )
        self.twilio_requests = Counter(
            "factory_bridge_twilio_requests", "Twilio API requests", ["kind", "status"], registry=r
        )
        self.factory_requests = Counter(
            "factory_bridge_factory_requests",
            "Factory API requests",
            ["endpoint", "status"],
            registry=r,
        )
        self.heartbeat_last_success = Gauge(
            "factory_bridge_heartbeat_last_success_timestamp_seconds",
            "Unix time of the last heartbeat the monitor accepted (before the first: when "
            "this leader started sending them; 0: this process sends none, a standby or no "
            "HEARTBEAT_URL)",
            registry=r,
        )
        self.is_leader = Gauge(
            "factory_bridge_is_leader",
            "1 while this process holds the leader lease (Discord, ladder, batching), 0 on a standby",
            registry=r,
        )
        self._open_tasks = open_tasks
        self._queue_depth = queue_depth
        self._task_timing = task_timing
        self._clock = clock
        self._rate_limit_handler: _RateLimitCounter | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ seams
    def observe_audit(self, entry: Mapping[str, Any]) -> None:
        """Count what one audit entry says (``Store.audit``'s values; never raises).

        ``task.<decision>`` with outcome ``ok`` is a confirmed decision (source from ``via``,
        :data:`DECISION_SOURCES`); ``failed``/``unknown`` a failure; ``task.acknowledge`` ``ok``
        an acknowledgement; ``escalation.<channel>`` a delivery's result.
        """
        try:
            action = str(entry.get("action") or "")
            outcome = str(entry.get("outcome") or "")
            via = str(entry.get("via") or "")
            task_id = entry.get("task_id")
            if action.startswith("task.") and action[5:] in _DECISIONS:
                source = DECISION_SOURCES.get(via, via or "unknown")
                if outcome == "ok":
                    self.decisions.labels(action[5:], source).inc()
                    self._time(task_id, self.time_to_decision, entry.get("at"))
                elif outcome in ("failed", "unknown"):
                    self.decision_failures.labels(source).inc()
            elif action == "task.acknowledge" and outcome == "ok":
                self._time(task_id, self.time_to_acknowledge, entry.get("at"))
            elif action.startswith("escalation.") and outcome not in ("claimed", "ok"):
                self.escalation_deliveries.labels(action[11:], outcome).inc()
        except Exception:  # metrics must never break the audit trail
            log.debug("metrics: audit entry not counted", exc_info=True)

    def _time(self, task_id: object, histogram: Histogram, at: object) -> None:
        if self._task_timing is None or not isinstance(task_id, str):
            return
        timing = self._task_timing

        async def observe() -> None:
            found = await timing(task_id)
            if found is None:
                return
            priority, created_at = found
            if isinstance(at, datetime):
                end: datetime | None = at
            elif isinstance(at, int | float):
                end = datetime.fromtimestamp(at, UTC)
            else:
                end = self._clock() if self._clock else None
            if end is not None:
                histogram.labels(priority).observe(max(0.0, (end - created_at).total_seconds()))

        try:
            task = asyncio.get_running_loop().create_task(observe())
        except RuntimeError:
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def step_taken(self, step: str, priority: str, late_seconds: float) -> None:
        """A ladder step was claimed (the ladder service's hook)."""
        self.escalation_steps.labels(step, "taken").inc()
        self.ladder_lateness.observe(max(0.0, late_seconds))
        if step == "sla_breach":
            self.sla_breaches.labels(priority).inc()

    def set_leader(self, leader: bool) -> None:
        """``factory_bridge_is_leader``: 1 while this process leads, 0 on a standby."""
        self.is_leader.set(1 if leader else 0)

    def observe_event(self, source: str, outcome: str) -> None:
        """An event arrived: ``source`` webhook/websocket/redis, ``outcome`` accepted/duplicate/
        rejected (and for ``redis``: ``ignored``, an unhandled type, or ``unavailable``, one
        failed attempt to read Redis)."""
        child = self._event_counters.get((source, outcome))
        if child is None:  # labels() takes a lock and builds the key: once per pair, not per event
            child = self._event_counters[(source, outcome)] = self.events.labels(source, outcome)
        child.inc()

    async def observe_factory_response(self, response: httpx.Response) -> None:
        """httpx response hook of the factory client."""
        self.factory_requests.labels(
            factory_endpoint(response.request), str(response.status_code)
        ).inc()

    def observe_twilio(self, kind: str, status: str) -> None:
        """A Twilio request ended: ``kind`` sms/call, ``status`` the HTTP status or ``error``."""
        self.twilio_requests.labels(kind, status).inc()

    def instrument_discord(self, http: Any) -> None:
        """Count every request of a discord.py ``HTTPClient`` by route and status, and every
        429 it reports (discord.py retries those itself and logs a warning)."""
        original = http.request

        async def request(route: Any, **kwargs: Any) -> Any:
            label = f"{route.method} {route.path}"
            try:
                result = await original(route, **kwargs)
            except Exception as exc:
                self.discord_requests.labels(label, str(getattr(exc, "status", "error"))).inc()
                raise
            self.discord_requests.labels(label, "2xx").inc()
            return result

        http.request = request
        self._instrument_interaction_acks()
        if self._rate_limit_handler is None:
            self._rate_limit_handler = _RateLimitCounter(self.discord_rate_limited)
            logging.getLogger("discord.http").addHandler(self._rate_limit_handler)

    def _instrument_interaction_acks(self) -> None:
        """Time initial interaction responses: discord.py sends them through the webhook adapter
        it reads from the ``async_context`` context variable; the one set here (in the current
        context, inherited by the tasks the app creates later) observes
        :attr:`interaction_ack` once Discord accepted the response."""
        from discord.utils import snowflake_time
        from discord.webhook.async_ import AsyncWebhookAdapter, async_context

        histogram = self.interaction_ack

        class _TimedAdapter(AsyncWebhookAdapter):
            def create_interaction_response(  # type: ignore[override]
                self, interaction_id: int, token: str, **kwargs: Any
            ) -> Any:
                sent = super().create_interaction_response(interaction_id, token, **kwargs)

                async def timed() -> Any:
                    result = await sent
                    try:
                        # wall time, like the snowflake's (not the app's injectable clock)
                        now = datetime.now(UTC)
                        age = (now - snowflake_time(int(interaction_id))).total_seconds()
                        histogram.observe(max(0.0, age))
                    except Exception:  # metrics never break an answer
                        log.debug("metrics: interaction ack not timed", exc_info=True)
                    return result

                return timed()

        async_context.set(_TimedAdapter())

    def close(self) -> None:
        """Detach the logging handler (the process ends or a test is done)."""
        if self._rate_limit_handler is not None:
            logging.getLogger("discord.http").removeHandler(self._rate_limit_handler)
            self._rate_limit_handler = None

    # ------------------------------------------------------------------ scrape
    async def render(self) -> tuple[bytes, str]:
        """The text exposition of every metric and its content type (gauges read now)."""
        if self._open_tasks is not None:
            try:
                counts = await self._open_tasks()
            except Exception:
                log.warning("metrics: open tasks could not be counted", exc_info=True)
            else:
                for priority in ("critical", "high", "medium", "low"):
                    self.tasks_open.labels(priority).set(counts.get(priority, 0))
        if self._queue_depth is not None:
            try:
                self.event_queue_depth.set(await self._queue_depth())
            except Exception:
                log.warning("metrics: the event queue could not be counted", exc_info=True)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
