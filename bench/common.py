"""Shared pieces of the benchmarks: a world with the bridge as a process, stats, memory."""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.factory.signing import signed_headers
from sandbox.world import WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess

__all__ = [
    "Measurement",
    "bridge_world",
    "peak_rss_mb",
    "percentile",
    "signed_task_event",
    "task_payload",
]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0–100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def peak_rss_mb(pid: int) -> float:
    """Peak resident set size of a process in MiB (``VmHWM`` of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return math.nan


@dataclass
class Measurement:
    """One benchmark's figures over several runs: name → list of per-run values."""

    id: str
    figures: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        """Record one run's value of a figure."""
        self.figures.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        """Median over runs."""
        return statistics.median(self.figures[name])


def task_payload(**fields: Any) -> dict[str, Any]:
    """A contract Task JSON with fresh id and now as creation time."""
    now = datetime.now(UTC).isoformat()
    task: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "title": "bench task",
        "type": "approval",
        "priority": "critical",
        "status": "pending",
        "stageName": "review",
        "context": {
            "summary": "benchmark",
            "testResults": {
                "total": 10,
                "passed": 10,
                "failed": 0,
                "skipped": 0,
                "coveragePercent": 90,
            },
        },
        "createdAt": now,
        "updatedAt": now,
    }
    task.update(fields)
    return task


def signed_task_event(task: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """A signed ``task.created`` webhook: (body, headers)."""
    body = json.dumps(
        {
            "type": "task.created",
            "timestamp": datetime.now(UTC).isoformat(),
            "channel": "tasks:pending",
            "data": {"task": task},
        }
    ).encode()
    headers = signed_headers(
        WEBHOOK_SECRET, body, event_id=str(uuid.uuid4()), timestamp=int(time.time())
    )
    headers["Content-Type"] = "application/json"
    return body, headers


@asynccontextmanager
async def bridge_world(
    *, discord_options: dict[str, Any] | None = None, **settings: object
) -> AsyncIterator[tuple[World, BridgeProcess]]:
    """The emulators and ``factory-bridge run`` as a child process, torn down afterwards.

    The Discord emulator's OpenAPI conformance check is off here (``check_spec=False``): it
    costs the emulator about 1.6 ms per request in this process, which would be counted as the
    bridge's latency; the test suite checks conformance.
    """
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        options = {"check_spec": False, **(discord_options or {})}
        world = World(Path(tmp), discord_options=options)
        await world.start()
        process = BridgeProcess(
            world.env(LOG_LEVEL="WARNING", **settings), Path(tmp), world.bridge_port
        )
        try:
            await process.start(timeout=60)
            yield world, process
        finally:
            await process.terminate(timeout=20)
            await world.stop()
