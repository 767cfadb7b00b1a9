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
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from aiohttp import web

from bench.common import Measurement, peak_rss_mb
from sandbox.world import free_port
from tests.support.harness import wait_until

ITEMS = 1000
DURATION_SECONDS = 10.0
GROUP_WAIT_SECONDS = 30
BATCH = 64  # alerts per POST, like a Prometheus server sends them

NOTES = [
    "Alertmanager 0.25 (Debian) on loopback, webhook receiver; group_by the item kind, "
    f"group_wait {GROUP_WAIT_SECONDS}s (the bridge's BATCH_GROUP_WAIT_SECONDS), "
    "alerts posted in batches of 64 over 10 s. 'time to last notification' counts from the "
    "first POST.",
]

CONFIG = """
route:
  receiver: bench
  group_by: ['kind']
  group_wait: {wait}s
  group_interval: 300s
  repeat_interval: 4h
receivers:
  - name: bench
    webhook_configs:
      - url: http://127.0.0.1:{hook}/hook
        send_resolved: false
        max_alerts: 0
"""


async def run_once(measurement: Measurement) -> None:
    """One run: start Alertmanager, feed the burst, wait for the notification(s)."""
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        raise RuntimeError("install Debian's prometheus-alertmanager to run the peer benchmark")
    notifications: list[tuple[float, int]] = []
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def hook(request: web.Request) -> web.Response:
        body = await request.json()
        notifications.append((time.monotonic(), len(body.get("alerts", []))))
        return web.Response(text="ok")

    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    am_port, cluster_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        config = Path(tmp) / "am.yml"
        config.write_text(CONFIG.format(wait=GROUP_WAIT_SECONDS, hook=hook_port))
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
            "--cluster.peer-timeout=1s",
            "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{am_port}"
            async with aiohttp.ClientSession() as session:
                for _ in range(200):
                    try:
                        async with session.get(f"{base}/-/ready") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.05)
                now = datetime.now(UTC)
                alerts = [
                    {
                        "labels": {"alertname": "review", "kind": "review:review", "task": f"t{i}"},
                        "annotations": {"summary": f"server {i} ready for review"},
                        "startsAt": now.isoformat(),
                        "endsAt": (now + timedelta(hours=1)).isoformat(),
                    }
                    for i in range(ITEMS)
                ]
                started = time.monotonic()
                post_time = 0.0
                batches = [alerts[i : i + BATCH] for i in range(0, ITEMS, BATCH)]
                for index, batch in enumerate(batches):
                    delay = started + index * DURATION_SECONDS / len(batches) - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    t0 = time.monotonic()
                    async with session.post(f"{base}/api/v2/alerts", json=batch) as response:
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
            measurement.add("peak RSS MB", peak_rss_mb(process.pid))
        finally:
            process.terminate()
            await process.wait()
            await runner.cleanup()
