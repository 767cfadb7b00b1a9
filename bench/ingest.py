"""ingest: signed events durably accepted (202 after the write) per second, beside the peer.

The bridge gets one signed event per request from 4 and then from 64 concurrent senders (10 s
each, one bridge process). The events are ``pipeline.stage_changed`` with the feed channel
unset, so processing after the 202 costs little and the figure is the intake's own: verify
HMAC, validate, write, answer.

The peer is measured in the same run, by the same client code: Alertmanager accepting one alert
per request from 4 and from 64 concurrent senders, and batches of 64 alerts from 4 senders
(in memory, nothing written to disk). "× peer" = the bridge's events/s ÷ Alertmanager's
alerts/s with as many senders (issue 19's target: ≥ 1.0 at 64 senders).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from bench.alertmanager import post_alerts, running_alertmanager
from bench.common import (
    Measurement,
    ResourceMeter,
    bridge_world,
    signed_pipeline_events,
    sized,
)

SENDER_COUNTS = (4, 64)
DURATION_SECONDS: float = sized(10.0, 1.0)
MAX_EVENTS: int = sized(40_000, 4_000)
PEER_BATCH = 64
PEER_BATCH_SENDERS = 4

NOTES = [
    "One bridge process takes 10 s from 4 senders, then 10 s from 64 (one signed "
    "pipeline.stage_changed event per request, stored before the 202); Alertmanager 0.25 is "
    "measured right after in the same run with the same client (one alert per request from 4 and "
    "64 senders, then batches of 64 from 4 senders, 10 s each). CPU s per 1,000 events: the "
    "bridge's user+sys over both phases ÷ events accepted.",
]


async def send_events(
    url: str, events: list[tuple[bytes, dict[str, str]]], *, senders: int, duration: float
) -> tuple[int, int, float]:
    """POST ``events`` from ``senders`` concurrent senders for at most ``duration`` seconds:
    (answered 202, answered otherwise, elapsed seconds)."""
    accepted = other = 0
    deadline = time.monotonic() + duration
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

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(sender(session) for _ in range(senders)))
        elapsed = time.monotonic() - started
    return accepted, other, elapsed


async def run_once(measurement: Measurement, *, duration: float = DURATION_SECONDS) -> None:
    """One run: the bridge with 4 then 64 senders, then Alertmanager the same way and in
    batches (``duration`` seconds per phase)."""
    bridge_rates: dict[int, float] = {}
    async with bridge_world(DISCORD_FEED_CHANNEL_ID="") as (world, process):
        url = f"{world.bridge_url}/events"
        meter = ResourceMeter(process)
        handled = 0
        for phase, senders in enumerate(SENDER_COUNTS):
            # new ids and content per phase: nothing is a duplicate of the phase before
            events = signed_pipeline_events(MAX_EVENTS, first=phase * MAX_EVENTS)
            accepted, other, elapsed = await send_events(
                url, events, senders=senders, duration=duration
            )
            handled += accepted + other
            bridge_rates[senders] = accepted / elapsed  # every 202 was written before it was sent
            measurement.add(f"events/s ({senders} senders)", bridge_rates[senders])
            measurement.add(f"non-202 answers ({senders} senders)", other)
        meter.record(measurement, handled)
    async with running_alertmanager(webhook=False) as manager:
        first = 0
        for senders in SENDER_COUNTS:
            accepted, elapsed = await post_alerts(
                manager.base_url,
                senders=senders,
                per_request=1,
                duration=duration,
                first_index=first,
            )
            first += accepted + 1_000_000
            peer = accepted / elapsed
            measurement.add(f"peer alerts/s ({senders} senders)", peer)
            measurement.add(
                f"× peer ({senders} senders)", bridge_rates[senders] / peer if peer else 0.0
            )
        accepted, elapsed = await post_alerts(
            manager.base_url,
            senders=PEER_BATCH_SENDERS,
            per_request=PEER_BATCH,
            duration=duration,
            first_index=first,
        )
        measurement.add(f"peer alerts/s (batches of {PEER_BATCH})", accepted / elapsed)
