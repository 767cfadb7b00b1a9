"""A dead man's switch: ping ``HEARTBEAT_URL`` while the bridge is healthy.

An outside monitor (Healthchecks.io, an Opsgenie or Grafana OnCall heartbeat, a Prometheus
``absent()`` rule) expects a request every ``HEARTBEAT_INTERVAL_SECONDS`` and pages when they
stop — the way Alertmanager's Watchdog alert is used. So the bridge pings only when every check
passes: the Discord session is up, the store takes a write, start-up finished (timers armed) and
the intake is listening. When a check fails it does not ping and logs which one failed; a monitor
that answers with an error is logged too. The time of the last ping the monitor accepted is the
metric ``factory_bridge_heartbeat_last_success_timestamp_seconds`` (on a leader that has not
had one accepted yet, the time it started pinging; 0 on a process that sends none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import httpx

from bot.periodic import Periodic

__all__ = ["Heartbeat"]

log = logging.getLogger(__name__)


class Heartbeat:
    """The heartbeat loop (a feature of :class:`bot.app.BridgeApp`: ``start``/``stop``).

    Parameters
    ----------
    url:
        ``HEARTBEAT_URL``: requested with GET (Healthchecks.io, Opsgenie and Grafana OnCall
        heartbeat URLs all accept GET).
    interval_seconds:
        ``HEARTBEAT_INTERVAL_SECONDS``: seconds between two pings.
    checks:
        The health checks (``BridgeApp.health``): ``{name: True | False | "reason"}``.
    on_success:
        Called with the Unix time of each ping the monitor accepted (the metric).
    on_start:
        Called with the Unix time the pings start (the metric's starting point on a new
        leader: a monitor that never accepts one shows as "no heartbeat for 5 minutes" in
        ``docs/prometheus/alerts.yml``, and a process that sends none keeps 0).
    timeout_seconds:
        Timeout of one ping.
    """

    def __init__(
        self,
        url: str,
        *,
        interval_seconds: float,
        checks: Callable[[], Awaitable[Mapping[str, bool | str]]],
        on_success: Callable[[float], None] | None = None,
        on_start: Callable[[float], None] | None = None,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = url
        self.interval_seconds = interval_seconds
        self._checks = checks
        self._on_success = on_success
        self._on_start = on_start
        self._timeout = timeout_seconds
        self._rounds = Periodic("heartbeat", self.beat, interval_seconds)
        self._http: httpx.AsyncClient | None = None
        self.pings = 0
        self.withheld = 0

    async def start(self) -> None:
        """Start pinging in the background."""
        self._http = httpx.AsyncClient(timeout=self._timeout)
        if self._on_start is not None:
            self._on_start(time.time())
        self._rounds.start()

    async def stop(self) -> None:
        """Stop pinging (the monitor will page if the bridge does not come back)."""
        await self._rounds.stop()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def beat(self) -> bool:
        """One round: ping when every check passes.

        Returns
        -------
        bool
            True when the monitor accepted a ping (2xx).
        """
        parts = await self._checks()
        failing = {name: state for name, state in parts.items() if state is not True}
        if failing:
            self.withheld += 1
            log.warning(
                "heartbeat withheld: %s",
                ", ".join(f"{name} {'down' if s is False else s}" for name, s in failing.items()),
            )
            return False
        assert self._http is not None, "start() first"
        try:
            response = await self._http.get(self.url)
        except httpx.HTTPError as exc:
            log.warning("heartbeat monitor unreachable: %s", exc)
            return False
        if not response.is_success:
            log.warning("heartbeat monitor answered %s", response.status_code)
            return False
        self.pings += 1
        if self._on_success is not None:
            self._on_success(time.time())
        return True
