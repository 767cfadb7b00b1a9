"""``python -m bench [ID ...] [--runs N]``: run the benchmarks and write bench/RESULTS.md.

Each benchmark runs the real bridge as a process (``python -m bot run``) against the emulators
on 127.0.0.1, bounded in time and count. Figures are the median over runs; the per-run values
are listed too.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.common import Measurement

BENCHMARKS = (
    "click",
    "post",
    "ingest",
    "burst",
    "ladders",
    "restart",
    "ladder_core",
    "peer",
    "memory",
)


@dataclass(frozen=True)
class Target:
    """A figure's target: ``op`` is ``<=`` or ``>=``."""

    figure: str
    op: str
    value: float

    def met(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        return measured <= self.value if self.op == "<=" else measured >= self.value


TARGETS: dict[str, list[Target]] = {
    "click": [Target("p99 ms", "<=", 50), Target("refused (10062)", "<=", 0)],
    "post": [Target("p50 ms", "<=", 50), Target("p99 ms", "<=", 200)],
    "ingest": [Target("events/s", ">=", 1000)],
    "burst": [
        Target("channel messages", "<=", 60),
        Target("429 answers", "<=", 0),
        Target("last task visible after s", "<=", 50),
    ],
    "ladders": [Target("lateness p99 s", "<=", 1.0), Target("peak RSS MB", "<=", 250)],
    "restart": [
        Target("timers armed after s", "<=", 5),
        Target("steps taken twice", "<=", 0),
        Target("steps not taken when the wait ended", "<=", 0),
    ],
    "ladder_core": [],
    "peer": [],
    "memory": [Target("growth KB per task", "<=", 0.5)],
}


def machine() -> str:
    cpus = os.cpu_count()
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    return f"{platform.machine()}, {cpus} cores{mem}, Python {platform.python_version()}, {platform.system()}"


def fmt(value: float) -> str:
    if math.isnan(value):
        return "—"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def render(results: list[Measurement], runs: int) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {machine()}. Date: {datetime.now(UTC).date().isoformat()}. "
        f"Runs per benchmark: {runs} (figures are the median of the per-run values).",
        "Reproduce: `python -m bench` (all) or `python -m bench ID` (see bench/README.md).",
        "",
        "| id | figure | median | per run | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for m in results:
        targets = {t.figure: t for t in TARGETS.get(m.id, [])}
        for name, values in m.figures.items():
            median = m.median(name)
            target = targets.get(name)
            lines.append(
                f"| {m.id} | {name} | {fmt(median)} | {', '.join(fmt(v) for v in values)} | "
                + (
                    f"{target.op} {fmt(target.value)} | {'yes' if target.met(median) else 'NO'} |"
                    if target
                    else "— | — |"
                )
            )
    notes = [(m.id, note) for m in results for note in m.notes]
    if notes:
        lines += ["", "## Notes", ""]
        lines += [f"- **{bench_id}**: {note}" for bench_id, note in notes]
    return "\n".join(lines) + "\n"


async def run(ids: list[str], runs: int) -> list[Measurement]:
    results = []
    for bench_id in ids:
        module = importlib.import_module(f"bench.{bench_id}")
        measurement = Measurement(bench_id)
        for run_index in range(getattr(module, "RUNS", runs)):
            started = time.monotonic()
            print(f"[{bench_id}] run {run_index + 1}/{runs} …", flush=True)
            await module.run_once(measurement)
            print(
                f"[{bench_id}]   done in {time.monotonic() - started:.1f}s: "
                + ", ".join(f"{k}={fmt(v[-1])}" for k, v in measurement.figures.items()),
                flush=True,
            )
        notes = getattr(module, "NOTES", [])
        measurement.notes.extend(notes)
        results.append(measurement)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "ids", nargs="*", help=f"benchmarks to run (all by default): {', '.join(BENCHMARKS)}"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per benchmark (default 3)")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument(
        "--render-only", action="store_true", help="re-render RESULTS.md from RESULTS.json"
    )
    args = parser.parse_args()
    ids = args.ids or list(BENCHMARKS)
    unknown = [i for i in ids if i not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    fresh = [] if args.render_only else asyncio.run(run(ids, args.runs))
    # keep the other benchmarks' last figures: a partial run updates only its own rows
    store = args.output.with_suffix(".json")
    saved = json.loads(store.read_text()) if store.exists() else {}
    for m in fresh:
        saved[m.id] = {
            "figures": m.figures,
            "notes": m.notes,
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
    store.write_text(json.dumps(saved, indent=2) + "\n")
    results = [
        Measurement(bench_id, saved[bench_id]["figures"], saved[bench_id]["notes"])
        for bench_id in BENCHMARKS
        if bench_id in saved
    ]
    text = render(results, args.runs)
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
