"""The peer: Prometheus Alertmanager on loopback, for the benchmarks that compare with it.

Alertmanager 0.25 (Debian's ``prometheus-alertmanager``; ``apt-get install
prometheus-alertmanager``) keeps alerts in memory and forwards groups to a webhook receiver.
:func:`running_alertmanager` starts one with a webhook receiver served by the benchmark (or none),
:func:`post_alerts` feeds it from concurrent senders the way the ``ingest`` benchmark feeds the
bridge, and :func:`alert` builds one alert.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from sandbox.world import free_port

__all__ = ["Alertmanager", "alert", "post_alerts", "running_alertmanager"]

CONFIG = """
route:
  receiver: bench
  group_by: ['kind']
  group_wait: {wait}s
  group_interval: 300s
  repeat_interval: 4h
receivers:
  - name: bench
{receiver}
"""

WEBHOOK = """    webhook_configs:
      - url: http://127.0.0.1:{hook}/hook
        send_resolved: false
        max_alerts: 0
"""


@dataclass
class Alertmanager:
    """A running Alertmanager: its API base URL, process id, and the notifications its
    webhook receiver got as (``time.monotonic()`` on arrival, alerts in it)."""

    base_url: str
    pid: int
    notifications: list[tuple[float, int]] = field(default_factory=list)


def binary() -> str:
    """The Alertmanager executable; ``RuntimeError`` when it is not installed."""
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        raise RuntimeError("install Debian's prometheus-alertmanager to run the peer figures")
    return found


def alert(index: int, now: datetime, *, kind: str = "review:review") -> dict[str, Any]:
    """One alert of ``kind`` (a label Alertmanager groups by), distinct per ``index``."""
    return {
        "labels": {"alertname": "review", "kind": kind, "task": f"t{index}"},
        "annotations": {"summary": f"server {index} ready for review"},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
    }


@asynccontextmanager
async def running_alertmanager(
    *, group_wait_seconds: float = 30, webhook: bool = True
) -> AsyncIterator[Alertmanager]:
    """Start Alertmanager on loopback (a free port, storage in a temporary folder), wait until
    ``/-/ready`` answers, stop it when the block ends.

    ``webhook``: serve a webhook receiver that records each notification; without it the
    receiver has no integration (alerts are accepted and grouped, nothing is sent).
    Raises ``RuntimeError`` when Alertmanager is not installed or not ready in 10 s.
    """
    executable = binary()
    runner: web.AppRunner | None = None
    receiver = ""
    manager = Alertmanager(base_url="", pid=0)
    if webhook:
        app = web.Application(client_max_size=64 * 1024 * 1024)

        async def hook(request: web.Request) -> web.Response:
            body = await request.json()
            manager.notifications.append((time.monotonic(), len(body.get("alerts", []))))
            return web.Response(text="ok")

        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        hook_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", hook_port).start()
        receiver = WEBHOOK.format(hook=hook_port)
    am_port, cluster_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        config = Path(tmp) / "am.yml"
        config.write_text(CONFIG.format(wait=group_wait_seconds, receiver=receiver))
        process = await asyncio.create_subprocess_exec(
            executable,
            f"--config.file={config}",
            f"--storage.path={tmp}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            f"--cluster.listen-address=127.0.0.1:{cluster_port}",
            "--cluster.peer-timeout=1s",
            "--log.level=warn",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        manager.base_url = f"http://127.0.0.1:{am_port}"
        manager.pid = process.pid
        try:
            await _wait_ready(manager.base_url)
            yield manager
        finally:
            process.terminate()
            await process.wait()
            if runner is not None:
                await runner.cleanup()


async def _wait_ready(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{base_url}/-/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("Alertmanager did not become ready in 10 s")


async def post_alerts(
    base_url: str, *, senders: int, per_request: int, duration: float, first_index: int = 0
) -> tuple[int, float]:
    """Post alerts for ``duration`` seconds from ``senders`` concurrent senders, each request
    carrying ``per_request`` alerts (bodies built before the clock starts, like the bridge's
    signed events). Returns (alerts answered 200, elapsed seconds)."""
    now = datetime.now(UTC)
    # enough for ≈ 12,000 requests/s or 60,000 alerts/s over ``duration`` (Alertmanager took
    # 8,227 one-alert requests/s and ≈ 22,000 alerts/s in batches here); a sender stops early
    # when they run out, and the figure is still alerts per elapsed second
    requests = max(1, int(min(12_000, 60_000 / per_request) * duration))
    bodies = [
        json.dumps(
            [alert(first_index + r * per_request + i, now) for i in range(per_request)]
        ).encode()
        for r in range(requests)
    ]
    cursor = iter(bodies)
    accepted = 0
    deadline = time.monotonic() + duration
    url = f"{base_url}/api/v2/alerts"
    headers = {"Content-Type": "application/json"}

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal accepted
        for body in cursor:
            if time.monotonic() > deadline:
                return
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    accepted += per_request

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
        elapsed = time.monotonic() - started
    return accepted, elapsed
