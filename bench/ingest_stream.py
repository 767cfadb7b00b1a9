"""ingest-stream: events stored per second from the factory's Redis streams, beside the peer.

N ``RedisStreamEvent`` entries (contract §7.7: ``type``, ``timestamp``, ``data`` as a JSON
string, ``source``) are written to three of the contract's streams on the local Redis — under
names unique to the run (``bench-stream-<hex>-factory.pipelines`` …, given to the bridge as
``FACTORY_REDIS_STREAMS`` and deleted afterwards) — with the consumer group ``discord-bridge``
created at ``0`` first, so the whole backlog waits when the bridge starts. The bridge
(``python -m bot run``, ``FACTORY_REDIS_URL`` set) then reads them in consumer batches
(``FACTORY_REDIS_BATCH_SIZE``), checks each entry as a webhook body, stores each batch in one
transaction and ``XACK``s it. The figure: rows in the store's ``events`` table per second, from
the moment the bridge answers ``/healthz`` until all N are stored (read from the store, by the
benchmark, every 0.1 s). Size: ``BENCH_STREAM_EVENTS`` (default 100,000).

The mix is the factory's routine traffic whose handling after the store costs little with the
feed and deploys channels unset (nothing is posted, the processor only marks them handled):
``pipeline.stage_changed`` (60 %), ``pipeline.created`` / ``pipeline.completed`` with a full
``Pipeline`` (20 %), ``deploy.started`` / ``deploy.succeeded`` (10 %) and
``agent.status_changed`` between ``idle`` and ``active`` (10 %). Task events are left out here:
each would post or edit a Discord message, and the figure would be the Discord emulator's.
``bench/stream_profile.py`` drives the same consumer in-process with task events in the mix.

The peer is measured in the same run: Alertmanager 0.25 taking alerts in batches of 64 from 4
senders for 10 s (kept in memory, nothing written to disk). "× peer" = events stored/s ÷
alerts accepted/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from bench.alertmanager import post_alerts, running_alertmanager
from bench.common import Measurement, ResourceMeter, bridge_world, sized
from bench.engines import current_engine, query
from sandbox.world import free_port
from tests.support.harness import BridgeProcess

#: The local Redis (``BENCH_REDIS_URL`` to use another).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
#: Entries seeded per run (``BENCH_STREAM_EVENTS``; 100,000 by default).
EVENTS = int(os.environ.get("BENCH_STREAM_EVENTS", sized(100_000, 5_000)))
#: ``FACTORY_REDIS_BATCH_SIZE`` of the bridge in this benchmark.
BATCH_SIZE = 1_000
#: Longest wait for all events to be stored (the run then reports what it got).
MAX_SECONDS: float = sized(120.0, 30.0)
PEER_BATCH = 64
PEER_SENDERS = 4
PEER_SECONDS: float = sized(10.0, 1.0)
GROUP = "discord-bridge"

NOTES = [
    f"{EVENTS:,} entries waiting in three streams (pipeline.stage_changed 60 %, pipeline.created/"
    "completed 20 %, deploy.started/succeeded 10 %, agent.status_changed 10 %; nothing posted), "
    f"read by one bridge in consumer batches of {BATCH_SIZE}: events stored per second counted "
    "in the store from /healthz ready until all are stored. Peer: Alertmanager 0.25, batches of "
    f"{PEER_BATCH} from {PEER_SENDERS} senders for 10 s in the same run (in memory). CPU s per "
    "1,000 events: the bridge's user+sys over the measured phase ÷ events stored in it.",
    "On PostgreSQL also: the same backlog read by a leader and a hot standby sharing the "
    "store (one consumer group, each process its own consumer), events stored/s by both from "
    "the standby's /healthz ready until all are stored.",
]

_STAGES = ("queued", "building", "testing", "review", "deploying")


def stream_entry(index: int, now: datetime) -> tuple[str, dict[str, str]]:
    """Entry ``index`` of the mix (see the module docstring): (stream suffix, fields).

    Every entry has new content (pipeline ``p-<index>`` …), so none is a duplicate.
    """
    stamp = now.isoformat()
    kind = index % 10
    data: dict[str, Any]
    if kind < 6:
        stream, type_ = "factory.pipelines", "pipeline.stage_changed"
        data = {
            "pipelineId": f"p-{index}",
            "pipelineName": f"mcp-server-{index}",
            "fromStage": _STAGES[index % 4],
            "toStage": _STAGES[index % 4 + 1],
            "triggeredBy": f"agent-{index % 17}",
        }
    elif kind < 8:
        stream = "factory.pipelines"
        type_ = "pipeline.created" if kind == 6 else "pipeline.completed"
        data = {
            "pipeline": {
                "id": f"p-{index}",
                "name": f"mcp-server-{index}",
                "slug": f"mcp-server-{index}",
                "platform": "node",
                "currentStage": "testing",
                "status": "active" if kind == 6 else "completed",
                "priority": "medium",
                "assigneeId": f"agent-{index % 17}",
                "slaDeadline": (now + timedelta(hours=4)).isoformat(),
                "createdAt": stamp,
                "updatedAt": stamp,
            }
        }
    elif kind == 8:
        stream = "factory.deploys"
        type_ = "deploy.started" if index % 20 < 10 else "deploy.succeeded"
        data = {
            "pipelineId": f"p-{index}",
            "pipelineName": f"mcp-server-{index}",
            "target": "production",
            "version": f"1.{index % 100}.{index % 7}",
            "status": "started" if type_ == "deploy.started" else "succeeded",
            "url": f"https://deploy.example/{index}",
        }
    else:
        stream, type_ = "factory.agents", "agent.status_changed"
        data = {
            "agentId": f"agent-{index}",
            "agentName": f"builder {index % 17}",
            "fromStatus": "idle",
            "toStatus": "active",
            "currentTaskId": f"t-{index}",
        }
    fields = {
        "type": type_,
        "timestamp": stamp,
        "data": json.dumps(data),
        "source": stream.removeprefix("factory.") + "-service",
    }
    return stream, fields


def unique_stream_names(prefix: str = "bench-stream") -> dict[str, str]:
    """The contract stream → a name unique to this run (``<prefix>-<hex>-<stream>``)."""
    tag = f"{prefix}-{uuid.uuid4().hex[:10]}-"
    return {s: tag + s for s in ("factory.pipelines", "factory.deploys", "factory.agents")}


async def seed(
    client: aioredis.Redis,
    names: dict[str, str],
    count: int,
    *,
    entries: Iterator[tuple[str, dict[str, str]]] | None = None,
) -> None:
    """Create group ``discord-bridge`` at ``0`` on each stream (``MKSTREAM``), then ``XADD``
    ``count`` entries (:func:`stream_entry`, or ``entries``) in pipelines of 1,000."""
    for name in names.values():
        await client.xgroup_create(name, GROUP, id="0", mkstream=True)
    now = datetime.now(UTC)
    source = entries or (stream_entry(i, now) for i in range(count))
    pending = 0
    pipe = client.pipeline(transaction=False)
    for _ in range(count):
        stream, fields = next(source)
        pipe.xadd(names[stream], fields)  # type: ignore[arg-type]
        pending += 1
        if pending == 1_000:
            await pipe.execute()
            pipe, pending = client.pipeline(transaction=False), 0
    if pending:
        await pipe.execute()


async def run_once(measurement: Measurement) -> None:
    """One run: seed, the bridge reads everything, then Alertmanager in batches of 64."""
    async with _bridge_on_a_backlog() as process:
        url = process.env["DATABASE_URL"]
        meter = ResourceMeter(process)
        rate, handled, stored = await _storing_rate(url)
        cpu = meter.cpu_used()
        measurement.add("events stored/s", rate)
        measurement.add("events not stored in time", EVENTS - stored)
        meter.record(measurement, handled, cpu=cpu)
    if current_engine() == "postgres":
        await _with_a_standby(measurement)
    async with running_alertmanager(webhook=False) as manager:
        accepted, seconds = await post_alerts(
            manager.base_url, senders=PEER_SENDERS, per_request=PEER_BATCH, duration=PEER_SECONDS
        )
    peer = accepted / seconds if seconds else math.nan
    measurement.add(f"peer alerts/s (batches of {PEER_BATCH})", peer)
    measurement.add("× peer", rate / peer if peer else math.nan)


async def _storing_rate(url: str) -> tuple[float, int, int]:
    """Watch the store (every 0.1 s) from now until all :data:`EVENTS` are stored or
    :data:`MAX_SECONDS` passed: (events stored per second meanwhile, how many were stored
    meanwhile, how many are stored in all)."""
    started = time.monotonic()
    at_start = _stored(url)
    stored, finished = at_start, started
    deadline = started + MAX_SECONDS
    while stored < EVENTS and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        stored, finished = _stored(url), time.monotonic()
    handled = stored - at_start
    elapsed = finished - started
    return (handled / elapsed if elapsed > 0 and handled else math.nan), handled, stored


def _stored(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM events")[0][0])


async def _with_a_standby(measurement: Measurement) -> None:
    """The same backlog read by a leader and a hot standby sharing the PostgreSQL store
    (README "Production": replicas share the streams as one consumer group, each process its
    own consumer): events stored per second by both, from when the standby answers
    ``/healthz`` until all are stored."""
    async with _bridge_on_a_backlog() as leader:
        standby = BridgeProcess(
            leader.env, leader.workdir, free_port(), name="standby", standby_ok=True
        )
        try:
            await standby.start(timeout=60)
            rate, _, _ = await _storing_rate(leader.env["DATABASE_URL"])
        finally:
            await standby.terminate(timeout=20)
        measurement.add("events stored/s (leader + standby)", rate)


@contextlib.asynccontextmanager
async def _bridge_on_a_backlog() -> AsyncIterator[BridgeProcess]:
    """:data:`EVENTS` entries seeded in streams unique to the run (deleted afterwards), and
    a bridge reading them (feed and deploys channels unset: nothing is posted)."""
    client = aioredis.from_url(REDIS_URL)
    names = unique_stream_names()
    try:
        await seed(client, names, EVENTS)
        async with bridge_world(
            DISCORD_FEED_CHANNEL_ID="",
            DISCORD_DEPLOYS_CHANNEL_ID="",
            FACTORY_REDIS_URL=REDIS_URL,
            FACTORY_REDIS_STREAMS=",".join(names.values()),
            FACTORY_REDIS_BATCH_SIZE=str(BATCH_SIZE),
        ) as (_world, process):
            yield process
    finally:
        await client.delete(*names.values())
        await client.aclose()
