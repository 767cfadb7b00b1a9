"""ingest: signed events durably accepted (202 after the write) per second, 4 concurrent senders.

The events are ``pipeline.stage_changed`` with the feed channel unset, so processing after the
202 costs little and the figure is the intake's own: verify HMAC, validate, write, answer.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import aiohttp

from bench.common import Measurement, bridge_world
from bot.factory.signing import signed_headers
from sandbox.world import WEBHOOK_SECRET

SENDERS = 4
DURATION_SECONDS = 10.0
MAX_EVENTS = 40_000


def _events(count: int) -> list[tuple[bytes, dict[str, str]]]:
    out = []
    now = int(time.time())
    stamp = datetime.now(UTC).isoformat()
    for i in range(count):
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


async def run_once(measurement: Measurement) -> None:
    """One run: 4 senders for 10 s (at most 40,000 events)."""
    async with bridge_world(DISCORD_FEED_CHANNEL_ID="") as (world, process):
        events = _events(MAX_EVENTS)
        url = f"{world.bridge_url}/events"
        accepted = 0
        other = 0
        deadline = time.monotonic() + DURATION_SECONDS
        cursor = iter(events)

        async def sender(session: aiohttp.ClientSession) -> None:
            nonlocal accepted, other
            for body, headers in cursor:
                if time.monotonic() > deadline:
                    return
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status == 202:
                        accepted += 1
                    else:
                        other += 1

        connector = aiohttp.TCPConnector(limit=SENDERS)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.monotonic()
            await asyncio.gather(*(sender(session) for _ in range(SENDERS)))
            elapsed = time.monotonic() - started
        stored = accepted  # every 202 was written before it was sent
        measurement.add("events/s", stored / elapsed)
        measurement.add("non-202 answers", other)
        assert process.process is not None
