"""ladder_core: whole ladders walked per second by the ladder service alone.

:class:`escalation.service.LadderService` on the in-memory fakes of every port
(``tests/support/ladder_fakes.py``): no database, no Discord, no Twilio, no timer; the clock
jumps to each wake-up. What is measured is the core's own cost per ladder — planning each step,
claiming it with its deliveries, doing the deliveries through the ports, computing the next
wake-up — so that the price of the rules is known apart from the I/O the ``ladders`` benchmark
includes.
"""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime

from bench.common import Measurement, sized
from bot.bridge_app import GC_YOUNG_THRESHOLD
from escalation.models import Priority
from escalation.policy import EscalationPolicy, SafeDefault
from tests.support.ladder_fakes import make_rig

STORE = False  # the ports are in-memory fakes: one run per benchmark run, whatever engine
COUNT: int = sized(5_000, 200)
START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

NOTES = [
    "5,000 ladders (the four priorities in turn, no quiet hours, safe default deferred, a "
    "roster of two on-call operators) walked one after the other to their end through "
    "escalation.service with in-memory fakes of every port; one process, one event loop.",
    "One clock for all: after the first ladder every step is taken late (the clock is past "
    "it), as after downtime. What the set-up built is frozen out of garbage collection "
    "(gc.freeze) and the young generation's threshold is the bridge's after its start-up "
    "(bot.bridge_app.GC_YOUNG_THRESHOLD, 5,000 allocations). ladders per CPU s: the same walk "
    "over the process's CPU time (steadier than wall time on a shared machine).",
]


async def run_once(measurement: Measurement) -> None:
    """Walk :data:`COUNT` ladders and record ladders/s, wake-ups/s, steps per ladder and
    ladders per CPU second."""
    rig = make_rig(
        START, policy=EscalationPolicy(quiet_hours=None, safe_default=SafeDefault.DEFERRED)
    )
    priorities = list(Priority)
    for n in range(COUNT):
        rig.add(f"t{n}", priorities[n % len(priorities)], created=START)
    # what the set-up built stays out of the walk's garbage collections and young collections
    # are as rare as in the bridge after its start-up (bot.bridge_app._freeze_startup_objects)
    gc.collect()
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
    try:
        started = time.perf_counter()
        cpu_started = time.process_time()
        wakes = 0
        for n in range(COUNT):
            wakes += await rig.walk(f"t{n}")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
    steps = sum(len(rows) for rows in rig.repository.step_rows.values())
    measurement.add("ladders/s", COUNT / elapsed)
    measurement.add("wake-ups/s", wakes / elapsed)
    measurement.add("steps per ladder", steps / COUNT)
    measurement.add("ladders per CPU s", COUNT / cpu)
