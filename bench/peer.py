"""peer: Alertmanager fed the same burst as the bridge, side by side.

Prometheus Alertmanager 0.25 (Debian's ``prometheus-alertmanager``; install it with
``apt-get install prometheus-alertmanager``) runs on loopback with a webhook receiver served by
this benchmark. It gets the burst of the ``burst`` benchmark: 1,000 routine items of one kind in
10 s, grouped by kind with ``group_wait`` equal to the bridge's ``BATCH_GROUP_WAIT_SECONDS``
(30 s). Alertmanager only forwards groups; it has no per-item control, rate pacing toward a chat
or decisions coming back, so the comparison is of the "group and forward" part only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import UTC, datetime

import aiohttp

from bench.alertmanager import alert, running_alertmanager
from bench.common import Measurement, cpu_seconds, peak_rss_mb, sized
from tests.support.harness import wait_until

STORE = False  # no store of the bridge is involved: one run per benchmark run, whatever engine
ITEMS: int = sized(1000, 50)
DURATION_SECONDS: float = sized(10.0, 1.0)
GROUP_WAIT_SECONDS: int = sized(30, 2)
BATCH = 64  # alerts per POST, like a Prometheus server sends them

NOTES = [
    "Alertmanager 0.25 (Debian) on loopback, webhook receiver; group_by the item kind, "
    f"group_wait {GROUP_WAIT_SECONDS}s (the bridge's BATCH_GROUP_WAIT_SECONDS), "
    "alerts posted in batches of 64 over 10 s. 'time to last notification' counts from the "
    "first POST; CPU is Alertmanager's, per 1,000 alerts.",
]


async def run_once(measurement: Measurement) -> None:
    """One run: start Alertmanager, feed the burst, wait for the notification(s)."""
    async with running_alertmanager(group_wait_seconds=GROUP_WAIT_SECONDS) as manager:
        cpu_before = cpu_seconds(manager.pid)
        notifications = manager.notifications
        async with aiohttp.ClientSession() as session:
            now = datetime.now(UTC)
            alerts = [alert(i, now) for i in range(ITEMS)]
            started = time.monotonic()
            post_time = 0.0
            batches = [alerts[i : i + BATCH] for i in range(0, ITEMS, BATCH)]
            for index, batch in enumerate(batches):
                delay = started + index * DURATION_SECONDS / len(batches) - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.monotonic()
                async with session.post(
                    f"{manager.base_url}/api/v2/alerts",
                    data=json.dumps(batch),
                    headers={"Content-Type": "application/json"},
                ) as response:
                    await response.read()
                    response.raise_for_status()
                post_time += time.monotonic() - t0
            with contextlib.suppress(TimeoutError):
                await wait_until(
                    lambda: sum(n for _, n in notifications) >= ITEMS,
                    timeout=GROUP_WAIT_SECONDS + 30,
                    what="Alertmanager's notifications",
                )
        measurement.add("accepted/s (while posting)", ITEMS / post_time if post_time else 0)
        measurement.add(
            "time to last notification s",
            (notifications[-1][0] - started) if notifications else float("nan"),
        )
        measurement.add("notifications", len(notifications))
        measurement.add("items notified", sum(n for _, n in notifications))
        measurement.add("peak RSS MB", peak_rss_mb(manager.pid))
        measurement.add(
            "CPU s per 1,000 events", (cpu_seconds(manager.pid) - cpu_before) * 1000 / ITEMS
        )
