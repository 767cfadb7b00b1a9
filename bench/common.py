"""Shared pieces of the benchmarks: a world with the bridge as a process, stats, memory."""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.engines import store_url
from bot.factory.signing import signed_headers
from sandbox.world import WEBHOOK_SECRET, World
from tests.support.harness import BridgeProcess

__all__ = [
    "EditLog",
    "Measurement",
    "ResourceMeter",
    "bridge_world",
    "cpu_seconds",
    "peak_rss_mb",
    "percentile",
    "signed_pipeline_events",
    "signed_task_event",
    "sized",
    "task_payload",
]


#: Set (by ``python -m bench --smoke``) to run every benchmark at a tiny size.
SMOKE_VARIABLE = "BENCH_SMOKE"


def sized(full: int | float, smoke: int | float) -> Any:
    """``full``, or ``smoke`` when :data:`SMOKE_VARIABLE` is set (a quick check of the code)."""
    return smoke if os.environ.get(SMOKE_VARIABLE) else full


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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (``utime`` + ``stime`` of /proc/<pid>/stat,
    every thread included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_name = stat[stat.rindex(")") + 2 :].split()  # the name may hold spaces
    ticks = int(after_name[11]) + int(after_name[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


class ResourceMeter:
    """Peak RSS and CPU per 1,000 events of one bridge process over a measured phase.

    Create it when the phase starts (the CPU spent starting up is not counted), then call
    :meth:`record` while the process still runs.
    """

    def __init__(self, process: BridgeProcess) -> None:
        assert process.process is not None, "start the bridge first"
        self.pid = process.process.pid
        self.cpu_at_start = cpu_seconds(self.pid)

    def cpu_used(self) -> float:
        """CPU seconds (user + system) since the meter was created."""
        return cpu_seconds(self.pid) - self.cpu_at_start

    def record(
        self, measurement: Measurement, events: int, *, cpu: float | None = None, suffix: str = ""
    ) -> None:
        """Add ``peak RSS MB`` and ``CPU s per 1,000 events`` (``events``: what the bridge
        handled in the phase — requests, clicks, steps; named in the benchmark's notes;
        ``cpu``: CPU seconds of the phase read earlier with :meth:`cpu_used`, else now)."""
        used = self.cpu_used() if cpu is None else cpu
        measurement.add(f"peak RSS MB{suffix}", peak_rss_mb(self.pid))
        measurement.add(
            f"CPU s per 1,000 events{suffix}", used * 1000 / events if events else math.nan
        )


@dataclass(frozen=True)
class EditRecord:
    """One ``PATCH /channels/{channel}/messages/{message}`` the Discord emulator received:
    arrival on the emulator's clock (seconds), the answer's status."""

    at: float
    channel_id: int
    message_id: int
    status: int


_EDIT_PATH = re.compile(r"^/channels/(\d+)/messages/(\d+)$")


class EditLog:
    """Every message edit request (``PATCH /channels/…/messages/…``) the emulator receives.

    Wraps the emulator's request routing of one :class:`World` (the emulator keeps no log of
    successful requests). ``on_edit`` callbacks run after each edit was applied, with the
    record, so that a benchmark can look at the message as it is right then.
    """

    def __init__(self, world: World) -> None:
        self.records: list[EditRecord] = []
        self.on_edit: list[Callable[[EditRecord], None]] = []
        discord = world.discord
        route = discord._route

        async def logged(request: Any, method: str, path: str) -> Any:
            found = _EDIT_PATH.match(path) if method == "PATCH" else None
            if found is None:
                return await route(request, method, path)
            at = discord.now()
            status = 0
            try:
                reply = await route(request, method, path)
                status = reply.status
                return reply
            except Exception as exc:  # the emulator's API errors carry their status
                status = int(getattr(exc, "status", 0))
                raise
            finally:
                record = EditRecord(at, int(found.group(1)), int(found.group(2)), status)
                self.records.append(record)
                for callback in self.on_edit:
                    callback(record)

        setattr(discord, "_route", logged)  # noqa: B010 - an instance attribute, not the class's

    def per_channel_per_minute(self, since: float, until: float) -> dict[int, float]:
        """Edit requests per channel per minute between two emulator-clock instants."""
        minutes = max(until - since, 1e-9) / 60
        counts: dict[int, int] = {}
        for record in self.records:
            if since <= record.at <= until:
                counts[record.channel_id] = counts.get(record.channel_id, 0) + 1
        return {channel: count / minutes for channel, count in counts.items()}

    def busiest_minute(self) -> int:
        """The most edit requests any one channel received in any sliding 60 s window."""
        best = 0
        by_channel: dict[int, list[float]] = {}
        for record in self.records:
            by_channel.setdefault(record.channel_id, []).append(record.at)
        for times in by_channel.values():
            times.sort()
            start = 0
            for end, at in enumerate(times):
                while at - times[start] > 60:
                    start += 1
                best = max(best, end - start + 1)
        return best


@dataclass
class Measurement:
    """One benchmark's figures over several runs: name → list of per-run values."""

    id: str
    figures: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: The bridge's store in these runs (``sqlite``, ``postgres``), ``—`` for none.
    engine: str = "sqlite"

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


def signed_pipeline_events(count: int, *, first: int = 0) -> list[tuple[bytes, dict[str, str]]]:
    """``count`` signed ``pipeline.stage_changed`` webhooks (body, headers), each a new event id
    and new content (pipelines ``p-<first>`` onwards: never a duplicate of an earlier batch
    that started elsewhere).

    With ``DISCORD_FEED_CHANNEL_ID`` unset the bridge only stores them (nothing is posted), so
    they load the intake alone.
    """
    out = []
    now = int(time.time())
    stamp = datetime.now(UTC).isoformat()
    for i in range(first, first + count):
        body = json.dumps(
            {
                "type": "pipeline.stage_changed",
                "timestamp": stamp,
                "channel": "pipeline:*",
                "data": {
                    "pipelineId": f"p-{i}",
                    "pipelineName": f"pipeline {i}",
                    "fromStage": "building",
                    "toStage": "testing",
                    "triggeredBy": "agent-1",
                },
            }
        ).encode()
        headers = signed_headers(WEBHOOK_SECRET, body, event_id=str(uuid.uuid4()), timestamp=now)
        headers["Content-Type"] = "application/json"
        out.append((body, headers))
    return out


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

    The store is the current engine's (:mod:`bench.engines`): an SQLite file in the run's
    folder or a fresh PostgreSQL database; its URL is ``process.env["DATABASE_URL"]``.

    The Discord emulator's OpenAPI conformance check is off here (``check_spec=False``): it
    costs the emulator about 1.6 ms per request in this process, which would be counted as the
    bridge's latency; the test suite checks conformance.
    """
    with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:
        options = {"check_spec": False, **(discord_options or {})}
        world = World(Path(tmp), discord_options=options)
        with store_url(world.database_file) as database_url:
            await world.start()
            env = world.env(LOG_LEVEL="WARNING", DATABASE_URL=database_url, **settings)
            process = BridgeProcess(env, Path(tmp), world.bridge_port)
            try:
                await process.start(timeout=60)
                yield world, process
            finally:
                await process.terminate(timeout=20)
                await world.stop()
