"""failover: the ``ladders`` tasks on PostgreSQL, a leader and a hot standby, ``kill -9`` of the
leader mid-window while the factory's webhooks go to the standby (issue 15 "Numbers", issue 19).

Two ``factory-bridge run`` processes share one fresh PostgreSQL database (``bench/engines.py``):
the leader (started first, it takes the lease) and a standby on its own port. The lease is the
default ``BRIDGE_LEADER_LEASE_SECONDS`` (10 s), the one issue 15's bound assumes. A third into
the window of due steps (as in ``restart``) the leader is killed with SIGKILL; from two seconds
before the kill the factory's webhooks (signed ``pipeline.stage_changed`` events, each a new
event id, :data:`EVENTS_PER_SECOND` a second) go to the standby, as a load balancer would send
them once the leader stopped answering, until a few seconds after the standby leads. The feed
channel is unset (``DISCORD_FEED_CHANNEL_ID=""``, as in ``ingest`` and ``click-storm``), so
handling such an event posts nothing: with it set, each event is a message to that one channel,
and 50 a second is ten times what Discord lets one channel take (5 per 5 s, which the bridge's
pacer keeps to) — the figure would measure that limit, not the failover.

Measured:

- takeover s: from the kill to the later of (a) the standby's ``/healthz`` answering 200 with
  ``data.role`` = ``leader`` (polled every 0.1 s) and (b) its log line "escalation ladder armed
  for N open tasks" (every open task's wake-up rebuilt from the store; the same line as
  ``restart``);
- steps taken twice / steps not taken when the wait ended / deliveries: from the store, as in
  ``restart`` (a (task, step) pair with more than one row, a delivery sent twice; a seeded task
  with no step row after the window and the bounded backlog wait);
- events lost: events POSTed to the standby that are not both stored (``events`` row by their
  ``X-Factory-Event-Id``) and handled (``processed_at`` set) when the wait ended; a POST not
  answered 202 counts as lost too (also reported alone). An event is stored at most once (the
  event id is the primary key) and handled once: the processor marks it processed;
- events handled s after the last was sent: from the stream's end until every event sent is
  stored and handled (the store is looked at every second; NaN when the wait ran out);
- peak RSS MB (``VmHWM``) and CPU s per 1,000 events of the standby, from the kill to the end;
  events = webhooks it received + ladder steps taken after the kill.

PostgreSQL only: SQLite cannot have replicas (one process holds the file lock and a second
refuses to start), so the runner skips this benchmark on SQLite (:data:`ENGINES`).

Size: ``BENCH_LADDER_TASKS``, ``BENCH_LADDER_WINDOW_SECONDS`` (the ``ladders`` tasks: 100,000
over 300 s by default), ``BENCH_FAILOVER_EVENTS_PER_SECOND`` (50).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.common import Measurement, ResourceMeter, signed_pipeline_events
from bench.engines import query, store_url
from bench.ladder_seed import Seed, seed_open_tasks
from bench.ladders import COUNT as LADDER_COUNT
from bench.ladders import (
    DISCORD,
    LEAD_SECONDS,
    WINDOW_SECONDS,
    every,
    ladder_env,
    step_rows,
    wait_for_window_steps,
)
from bench.restart import OPEN_STATUSES, armed_at, deliveries
from sandbox.world import World, free_port
from tests.support.harness import BridgeProcess, wait_until

RUNS = 3
#: The only engine: SQLite cannot have replicas (issue 15).
ENGINES = ("postgres",)
COUNT = LADDER_COUNT  # the same tasks as the ladders and restart benchmarks
#: The kill comes this far into the window of due steps, in seconds (as in ``restart``).
KILL_AFTER_SECONDS = WINDOW_SECONDS / 3
#: Webhooks sent to the standby per second during the failover.
EVENTS_PER_SECOND = float(os.environ.get("BENCH_FAILOVER_EVENTS_PER_SECOND", "50"))
#: The stream starts this many seconds before the kill …
EVENTS_BEFORE_KILL_SECONDS = 2.0
#: … and ends this many seconds after the standby leads.
EVENTS_AFTER_TAKEOVER_SECONDS = 5.0
#: How long the standby may take to lead before the run gives up on it, in seconds.
MAX_TAKEOVER_SECONDS = 120.0

NOTES = [
    f"PostgreSQL only (SQLite cannot have replicas). Two bridges on one database, default "
    f"lease (10 s); the leader is killed with SIGKILL {KILL_AFTER_SECONDS:.0f} s into the "
    f"{WINDOW_SECONDS:.0f} s window of the ladders' due steps. 'takeover s': kill → the "
    "standby's /healthz says role leader AND its log says 'escalation ladder armed'. From 2 s "
    f"before the kill until 5 s after the takeover, {EVENTS_PER_SECOND:.0f} signed webhooks a "
    "second (pipeline.stage_changed; feed channel unset, so handling one posts nothing) go to "
    "the standby; 'events lost': sent but not stored and processed when the wait ended. Peak RSS and CPU s per 1,000 events: the standby from the kill on, ÷ (webhooks "
    "received + steps taken after the kill).",
]


class EventStream:
    """Signed webhooks POSTed to one bridge at a steady rate until :meth:`stop`.

    Each POST runs on its own (a slow answer does not delay the next send); ``sent`` maps
    every event id to the HTTP status of its answer (0: no answer).
    """

    def __init__(self, url: str, per_second: float) -> None:
        self.url = url
        self.per_second = per_second
        self.sent: dict[str, int] = {}
        self._stopping = asyncio.Event()
        self._posts: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Send until :meth:`stop`; returns once every POST was answered (or failed)."""
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            started = time.monotonic()
            index = 0
            while not self._stopping.is_set():
                ((body, headers),) = signed_pipeline_events(1, first=index)
                post = asyncio.create_task(self._post(session, body, headers))
                self._posts.add(post)
                post.add_done_callback(self._posts.discard)
                index += 1
                delay = started + index / self.per_second - time.monotonic()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), max(delay, 0.0))
            if self._posts:
                await asyncio.gather(*self._posts)

    async def _post(
        self, session: aiohttp.ClientSession, body: bytes, headers: dict[str, str]
    ) -> None:
        event_id = headers["X-Factory-Event-Id"]
        self.sent[event_id] = 0
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.post(self.url, data=body, headers=headers) as response:
                await response.read()
                self.sent[event_id] = response.status

    def stop(self) -> None:
        """End the stream (POSTs under way still finish)."""
        self._stopping.set()


def events_handled(database_url: str, event_ids: list[str]) -> tuple[int, int]:
    """(stored, stored and processed) among ``event_ids`` in the store's ``events`` table."""
    if not event_ids:
        return 0, 0
    rows = query(
        database_url,
        "SELECT event_id, processed_at FROM events WHERE event_id = ANY(:ids)",
        {"ids": event_ids},
    )
    return len(rows), sum(1 for _, processed in rows if processed is not None)


async def run_once(measurement: Measurement) -> None:
    """Seed, start a leader and a standby, kill -9 the leader mid-window, measure."""
    with tempfile.TemporaryDirectory(prefix="bridge-failover-") as tmp:
        world = World(Path(tmp), discord_options=DISCORD)
        with store_url(world.database_file) as url:
            await world.start()
            # nothing posted per event (see the module docstring)
            env = {**ladder_env(world, url), "DISCORD_FEED_CHANNEL_ID": ""}
            leader = BridgeProcess(env, Path(tmp), world.bridge_port, name="leader")
            standby = BridgeProcess(env, Path(tmp), free_port(), name="standby", standby_ok=True)
            try:
                await _run(measurement, world, leader, standby, url)
            finally:
                await standby.terminate(timeout=20)
                await leader.terminate(timeout=20)
                await world.stop()


async def _run(
    measurement: Measurement,
    world: World,
    leader: BridgeProcess,
    standby: BridgeProcess,
    url: str,
) -> None:
    seed = await seed_open_tasks(
        world,
        COUNT,
        lead_seconds=LEAD_SECONDS,
        window_seconds=WINDOW_SECONDS,
        database_url=url,
    )
    await leader.start(timeout=60 + COUNT / 1000)
    await standby.start(timeout=60)
    roles = (await leader.role(), await standby.role())
    if roles != ("leader", "standby"):
        raise RuntimeError(f"expected a leader and a standby, got {roles}")
    measurement.add("bridges ready before the window s", seed.window_start - time.time())
    kill_at = seed.window_start + KILL_AFTER_SECONDS
    await wait_until(
        lambda: time.time() > kill_at - EVENTS_BEFORE_KILL_SECONDS,
        timeout=kill_at - time.time() + 30,
        what="the stream's start",
    )
    stream = EventStream(f"http://127.0.0.1:{standby.port}/events", EVENTS_PER_SECOND)
    streaming = asyncio.create_task(stream.run())
    try:
        await wait_until(lambda: time.time() > kill_at, timeout=30, what="mid-window")
        await leader.kill()
        killed_at = time.time()
        meter = ResourceMeter(standby)
        before = len(step_rows(url))
        takeover = await _takeover(standby, killed_at)
        if not math.isnan(takeover):  # else the standby never led: the stream ends now
            await wait_until(
                lambda: time.time() > killed_at + takeover + EVENTS_AFTER_TAKEOVER_SECONDS,
                timeout=EVENTS_AFTER_TAKEOVER_SECONDS + 5,
                what="the stream's end",
            )
    finally:
        stream.stop()
        await streaming
    sent = list(stream.sent)
    stream_ended = time.monotonic()
    drained = float("nan")
    with contextlib.suppress(TimeoutError):
        await wait_until(
            every(1.0, lambda: events_handled(url, sent)[1] >= len(sent)),
            timeout=60,
            what="every event sent to the standby to be handled",
        )
        drained = time.monotonic() - stream_ended
    with contextlib.suppress(TimeoutError):
        await _wait_for_steps(world, seed, url)
    _measure(measurement, url, before, takeover, stream, meter)
    measurement.add("events handled s after the last was sent", drained)


async def _takeover(standby: BridgeProcess, killed_at: float) -> float:
    """Seconds from ``killed_at`` (Unix time) until the standby leads and its ladder is armed
    (NaN when that did not happen within :data:`MAX_TAKEOVER_SECONDS`)."""
    assert standby.log_path is not None
    leads_at: float | None = None
    deadline = killed_at + MAX_TAKEOVER_SECONDS
    while time.time() < deadline:
        if leads_at is None and await standby.role() == "leader":
            leads_at = time.time()
        # both are waited for, in whichever order they come (the standby logs "armed" only
        # when it takes over)
        armed = armed_at(standby.log_path) if leads_at is not None else None
        if leads_at is not None and armed is not None:
            return max(leads_at, armed) - killed_at
        await asyncio.sleep(0.1)
    return float("nan")


async def _wait_for_steps(world: World, seed: Seed, url: str) -> None:
    """Every step of the window taken, then the last bundled DMs out (as in ``restart``)."""
    await wait_for_window_steps(world, seed, url, "every step of the window after the failover")
    # bundled DMs wait up to ESCALATION_BUNDLE_SECONDS (10 s here)
    await wait_until(
        every(1.0, lambda: not any(d[3] in OPEN_STATUSES for d in deliveries(url))),
        timeout=60,
        what="the last bundles to go out",
    )


def _measure(
    measurement: Measurement,
    url: str,
    before: int,
    takeover: float,
    stream: EventStream,
    meter: ResourceMeter,
) -> None:
    rows = step_rows(url)
    pairs = [(task, step) for task, step, *_ in rows]
    all_deliveries = deliveries(url)
    sent = [
        (task, step, recipient)
        for task, step, recipient, status in all_deliveries
        if status == "sent"
    ]
    event_ids = list(stream.sent)
    stored, handled = events_handled(url, event_ids)
    measurement.add("takeover s", takeover)
    measurement.add("steps before kill", before)
    measurement.add(
        "steps taken twice", (len(pairs) - len(set(pairs))) + (len(sent) - len(set(sent)))
    )
    # a step with no row when the bounded wait ended may be backlog, not lost: the figure is
    # named for what it measures (as in restart)
    measurement.add("steps not taken when the wait ended", COUNT - len(set(pairs)))
    measurement.add(
        "deliveries still open when the wait ended",
        sum(1 for d in all_deliveries if d[3] in OPEN_STATUSES),
    )
    measurement.add(
        "deliveries interrupted (unknown)", sum(1 for d in all_deliveries if d[3] == "unknown")
    )
    measurement.add("events sent to the standby", len(event_ids))
    measurement.add(
        "events not accepted (202)", sum(1 for status in stream.sent.values() if status != 202)
    )
    measurement.add("events not stored", len(event_ids) - stored)
    measurement.add("events lost", len(event_ids) - handled)
    try:
        meter.record(measurement, len(event_ids) + max(len(rows) - before, 0))
    except FileNotFoundError:  # the standby exited (e.g. deposed, status 75): nothing to read
        measurement.add("peak RSS MB", float("nan"))
        measurement.add("CPU s per 1,000 events", float("nan"))
