"""The Redis Streams consumer alone, in-process, for profiling (not one of ``python -m bench``'s).

``python -m bench.stream_profile [--events N] [--batch N] [--profile] [--store-url URL]``
seeds N entries (the mix of ``bench/ingest_stream.py`` plus ``task.created`` events with a full
task, one in five) into streams unique to the run on the local Redis, then runs
:class:`bot.factory.redis_intake.RedisStreamIntake` against a fresh SQLite file (or
``--store-url``) in this process until every entry is acknowledged, and prints entries/s
(read + check + store + ``XACK``). With ``--profile`` it runs under cProfile and prints the
top functions by own time and by cumulative time. Nothing is handed to a processor (the
intake's ``on_stored`` does nothing), so the figure is the intake's own. Bounded: stops after
60 s whatever happened; the streams are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import signal
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from bench.common import task_payload
from bench.ingest_stream import REDIS_URL, seed, stream_entry, unique_stream_names
from bot.factory.redis_intake import RedisStreamIntake
from bot.store import Store

MAX_SECONDS = 60.0


def mixed_entries(now: datetime) -> Iterator[tuple[str, dict[str, str]]]:
    """The ``ingest-stream`` mix with every fifth entry a ``task.created`` (full task)."""
    import json

    index = 0
    while True:
        if index % 5 == 4:
            data = {"task": task_payload(priority="medium", title=f"review {index}")}
            yield (
                "factory.tasks",
                {
                    "type": "task.created",
                    "timestamp": now.isoformat(),
                    "data": json.dumps(data),
                    "source": "task-service",
                },
            )
        else:
            yield stream_entry(index, now)
        index += 1


async def main(events: int, batch: int, store_url: str | None, profile: bool) -> None:
    # a SIGTERM (``timeout``) cancels the run, so that the streams are still deleted
    current = asyncio.current_task()
    assert current is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, current.cancel)
    client = aioredis.from_url(REDIS_URL)
    names = unique_stream_names("bench-profile")
    names["factory.tasks"] = next(iter(names.values())).replace(
        "factory.pipelines", "factory.tasks"
    )
    with tempfile.TemporaryDirectory(prefix="stream-profile-") as tmp:
        store = Store(store_url or f"sqlite:///{Path(tmp) / 'bridge.db'}")
        await store.create_schema()
        try:
            await seed(client, names, events, entries=mixed_entries(datetime.now(UTC)))
            intake = RedisStreamIntake(
                url=REDIS_URL,
                store=store,
                on_stored=lambda event_id, event: None,
                streams=tuple(names.values()),
                consumer="profile",
                batch_size=batch,
                block_seconds=0.05,
            )
            profiler = cProfile.Profile() if profile else None
            started, cpu_started = time.perf_counter(), time.process_time()
            if profiler:
                profiler.enable()
            await intake.start()
            deadline = time.monotonic() + MAX_SECONDS
            while intake.acked < events and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)  # polls a counter, bounded by the deadline
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            if profiler:
                profiler.disable()
            await intake.stop()
            print(
                f"{intake.acked} entries acknowledged ({intake.events_stored} stored, "
                f"{intake.malformed} malformed) in {elapsed:.2f}s: "
                f"{intake.acked / elapsed:,.0f}/s (batches of {batch}); this process's CPU "
                f"{cpu:.2f}s: {cpu * 1e6 / max(intake.acked, 1):.0f} µs per entry "
                f"(all threads), {intake.acked / cpu:,.0f} entries per CPU second"
            )
            if profiler:
                for order in ("tottime", "cumulative"):
                    out = io.StringIO()
                    pstats.Stats(profiler, stream=out).sort_stats(order).print_stats(30)
                    print(out.getvalue())
        finally:
            await store.close()
            await client.delete(*names.values())
            await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.stream_profile", description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--store-url", default=None)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.events, args.batch, args.store_url, args.profile))
